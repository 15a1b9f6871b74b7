"""`--help` read as a newcomer reads it: no tyro notation left unexplained, no default said
twice, no measurement history."""

import contextlib
import io
import re

import pytest

from iltk.cli import COMMANDS
from iltk.cli import main as cli_main


def _help(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli_main([*args, "--help"])
    return re.sub(r"[│╭╮╰╯─]", " ", out.getvalue())


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - {"dataset"}))
def test_help_says_each_default_once_and_carries_no_history(name):
    text = " ".join(_help(name).split())
    assert "{None}|PATH" not in text and "{None}|INT" not in text and "{None}|STR" not in text
    assert "{None}|FLOAT" not in text
    # a docstring that says its default is not followed by tyro's "(default: None)"
    assert not re.search(r"\(default: [^)]*\)\.? \(default: None\)", text), name
    for history in ("session 1", "issue 1", "benchmarks/", "RESULTS"):
        assert history not in text, (name, history)
    # the command's own description heads its help
    first = " ".join((COMMANDS[name].__doc__ or "").split())[:40]
    assert first and first in text, (name, first)


def test_the_top_level_help_is_one_line_a_command():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["--help"]) == 0
    text = out.getvalue()
    assert text.startswith("usage: iltk COMMAND") and len(text.splitlines()) < 45
    assert max(map(len, text.splitlines())) <= 80
    for name in COMMANDS:  # every command listed, each by the first sentence of its doc
        assert re.search(rf"^  {name} +\S", text, re.M), name
    assert "Schulman et al. 2017" in text  # a sentence is not cut at "al."
