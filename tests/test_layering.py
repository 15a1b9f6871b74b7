"""The layering of ARCHITECTURE.md: iltk/ runs where pygame is absent; `python -m iltk` works."""

import subprocess
import sys

from iltk.collect import collect_demos

NO_PYGAME = "import sys; sys.modules['pygame'] = None; "  # any `import pygame` now fails


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_headless_replay_video_needs_no_pygame(tmp_path):
    data = tmp_path / "reach.hdf5"
    collect_demos("iltk/Reach-v0", data, 1, progress=False)
    out = tmp_path / "replay.mp4"
    res = _run(
        NO_PYGAME + "from iltk.cli import main; "
        f"sys.exit(main(['replay', {str(data)!r}, '--video', {str(out)!r}]))"
    )
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 1000


def test_library_imports_without_pygame():
    res = _run(
        NO_PYGAME + "import iltk, iltk.cli, iltk.replay, iltk.evaluate, iltk.algos.dagger, "
        "iltk.algos.dart, iltk.collect, iltk.video; print('ok')"
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_python_dash_m_iltk():
    res = subprocess.run(
        [sys.executable, "-m", "iltk", "--version"], capture_output=True, text=True
    )
    assert res.returncode == 0 and res.stdout.startswith("iltk ")


def test_help_does_not_import_torch():
    """`iltk --help` and the training commands' help build from torch-free config modules."""
    for args in (["--help"], ["train", "--help"], ["dagger", "--help"], ["dart", "--help"]):
        res = _run(
            "import sys, contextlib, io\n"
            "from iltk.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            f"    try:\n        main({args!r})\n    except SystemExit:\n        pass\n"
            "assert 'usage' in out.getvalue(), out.getvalue()\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "[]", (args, res.stdout[:200])


def test_policy_shapes_are_not_options():
    """Fields filled in from the data (shapes, keys, bounds) are saved but not CLI options."""
    import contextlib
    import io

    from iltk.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        main(["train", "--help"])
    text = out.getvalue()
    assert "--bc.hidden" in text and "--act.chunk-size" in text
    for name in ("state-dim", "action-dim", "lowdim-keys", "image-shapes", "action-low"):
        assert name not in text, name


def test_the_rl_core_knows_no_algorithm_built_on_it():
    """iltk/rl (PPO's pieces) imports nothing of iltk.algos, teleop or the CLI: fine-tuning
    and IRL compose PPO from outside (a reward source, callbacks), never the other way."""
    import ast
    from pathlib import Path

    import iltk.rl

    found = []
    for path in sorted(Path(iltk.rl.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [
                f"{path.name}: {n}"
                for n in names
                if n.startswith(("iltk.algos", "iltk.cli", "teleop", "pygame"))
            ]
    assert len(list(Path(iltk.rl.__file__).parent.glob("*.py"))) >= 9
    assert not found, found
