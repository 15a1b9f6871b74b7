"""What the ``iltk`` commands share: how tyro reads the settings dataclasses, the one-line
error type, and the checks several commands make."""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import tyro
from tyro.conf import Suppress
from tyro.constructors import ConstructorRegistry, StructConstructorSpec, StructTypeInfo


def _cli_registry() -> ConstructorRegistry:
    """How tyro reads iltk's config dataclasses, through its public constructor API:

    - fields marked ``FROM_DATA`` (a policy's shapes, keys and bounds, filled in from the
      dataset) are not options;
    - attribute docstrings are reflowed: tyro keeps every line break of a multi-line
      docstring, so ``--help`` came out ragged at 80 columns (a line starting with '-' or a
      digit still starts a new line, for lists).
    """
    registry = ConstructorRegistry()
    busy: list[bool] = []

    def reflow(text: str | None) -> str | None:
        if not text:
            return text
        lines = [line.strip() for line in text.split("\n")]
        out = lines[:1]
        for line in lines[1:]:
            if not line or line[0] in "-*" or line[0].isdigit() or not out[-1]:
                out.append(line)
            else:
                out[-1] += " " + line
        return "\n".join(out)

    @registry.struct_rule
    def iltk_dataclasses(info: StructTypeInfo):
        module = getattr(info.type, "__module__", "") or ""
        if (
            busy
            or not dataclasses.is_dataclass(info.type)
            or not module.startswith(("iltk.", "teleop."))
        ):
            return None
        busy.append(True)  # the default rule builds the spec; then it is adjusted
        try:
            spec = ConstructorRegistry.get_struct_spec(info)
        finally:
            busy.pop()
        if not isinstance(spec, StructConstructorSpec):
            return spec
        from_data = {f.name for f in dataclasses.fields(info.type) if f.metadata.get("from_data")}
        fields = []
        for f in spec.fields:
            help_of = f.helptext
            helptext = (lambda h=help_of: reflow(h())) if callable(help_of) else reflow(help_of)
            kind = Suppress[f.type] if f.name in from_data else _plain_optional(f, help_of)
            fields.append(dataclasses.replace(f, type=kind, helptext=helptext))
        return dataclasses.replace(
            spec, fields=tuple(fields), instantiate=_one_line_errors(spec.instantiate)
        )

    return registry


def _one_line_errors(instantiate):
    """A settings dataclass's refusal (a ValueError from its checks) as the command's one
    line (``CliError``), not tyro's box around it."""

    @functools.wraps(instantiate)  # tyro reads the command's description from it
    def build(*args, **kwargs):
        try:
            return instantiate(*args, **kwargs)
        except ValueError as err:
            raise CliError(str(err)) from None

    return build


_METAVARS = {Path: "PATH", int: "INT", float: "FLOAT", str: "STR"}


def _plain_optional(f, help_of):
    """An optional setting (``X | None``) shown as X: tyro writes ``{None}|PATH`` and
    "(default: None)", and the docstrings say what unset means ("(default: ...)",
    "unset: ..."), so the metavar is the plain type's and tyro's own default is not
    repeated where the docstring gives one."""
    import types
    import typing

    kind = f.type
    inner, extra = kind, ()
    if typing.get_origin(kind) is typing.Annotated:  # e.g. Positional[Path | None]
        inner, *extra = typing.get_args(kind)
    args = typing.get_args(inner)
    if typing.get_origin(inner) not in (typing.Union, types.UnionType) or type(None) not in args:
        return kind
    rest = [a for a in args if a is not type(None)]
    if len(rest) != 1 or f.default is not None:
        return kind
    plain = rest[0]
    if plain in _METAVARS:
        metavar = _METAVARS[plain]
    elif typing.get_origin(plain) is tuple and all(a in _METAVARS for a in typing.get_args(plain)):
        metavar = " ".join(_METAVARS[a] for a in typing.get_args(plain))
    else:
        return kind
    text = help_of() if callable(help_of) else (help_of or "")
    says_default = "(default:" in text or "unset" in text or "None" in text
    arg = tyro.conf.arg(
        metavar=metavar,
        help_behavior_hint=(lambda _: "") if says_default else "(default: unset)",
    )
    return typing.Annotated[(inner, *extra, arg)]


REGISTRY = _cli_registry()


class CliError(Exception):
    """An error whose message is the whole story: printed without a traceback."""


def _check_file_name(flag: str, path: Path, example: str) -> None:
    """Refuse a file output typed as a folder (``--out newdir/``): the path type drops the
    trailing slash, so the command line itself is read."""
    for i, arg in enumerate(ARGV):
        value = arg.split("=", 1)[1] if arg.startswith(flag + "=") else None
        if arg == flag and i + 1 < len(ARGV):
            value = ARGV[i + 1]
        if value is not None and value.endswith(("/", os.sep)):
            raise CliError(
                f"{flag} {value}: names a folder; {flag} takes a file name (e.g. {value}{example})"
            )
    if path.is_dir():
        raise CliError(f"{path}: is a folder; {flag} takes a file name (e.g. {path}/{example})")


def _count(n: int, noun: str) -> str:
    """'1 episode', '2 episodes'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _refuse_invisible_window(command: str) -> None:
    """A window under SDL's dummy (or offscreen) video driver is invisible and takes no keys,
    so nothing could end the command: say so at once, as for no display at all."""
    driver = os.environ.get("SDL_VIDEODRIVER", "")
    if driver in ("dummy", "offscreen"):
        raise CliError(
            f"SDL_VIDEODRIVER={driver}: `iltk {command}` would open a window nobody can see "
            "or close; unset SDL_VIDEODRIVER to use the screen"
            + (", or pass --video OUT.mp4 to render without one" if command == "replay" else "")
        )


def _command(name: str, config: type, more_doc: str, run) -> type:
    """A subcommand from a torch-free settings dataclass (``iltk/algos/settings.py``): the
    same fields, the docstring extended, and ``run``."""
    cls = type(
        name,
        (config,),
        {
            "__doc__": f"{config.__doc__} {more_doc} `--config RUN/config.json` starts "
            "from an earlier run's settings (the flags given change them).",
            "run": run,
            "__module__": __name__,
            "__qualname__": name,
        },
    )
    return dataclass(cls)


ARGV: list[str] = []
"""This invocation's arguments (`iltk train --nproc` passes them on to its processes)."""
