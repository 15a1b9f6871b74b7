"""The ``iltk`` command. Each subcommand is a dataclass whose attribute docstrings are its
``--help``; heavy modules (torch, teleop/pygame) are imported only by the subcommand that
needs them, so ``iltk --help`` stays fast and the library stays headless.

The commands live by group: ``common`` (the settings reader, errors, shared checks),
``data`` (tasks, collect, dataset), ``interactive`` (record, replay, correct) and
``training`` (train, eval, dagger, dart, ppo, finetune, irl).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import tyro

from iltk.algos.settings import (
    DaggerConfig,
    DartConfig,
    FinetuneSettings,
    IRLConfig,
    PPOConfig,
    TrainConfig,
)
from iltk.cli.common import ARGV, REGISTRY, CliError, _command
from iltk.cli.data import DATASET_COMMANDS, Collect, Dataset, Tasks
from iltk.cli.interactive import Correct, Record, Replay
from iltk.cli.training import (
    Eval,
    _run_dagger,
    _run_dart,
    _run_finetune,
    _run_irl,
    _run_ppo,
    _run_train,
)
from iltk.data.format import DatasetError
from iltk.envs import UnknownTaskError

__all__ = ["COMMANDS", "CliError", "main"]

COMMANDS: dict[str, type] = {
    "tasks": Tasks,
    "collect": Collect,
    "dataset": Dataset,
    "train": _command(
        "Train",
        TrainConfig,
        "Writes OUT/config.json, best/ and last/ checkpoints, metrics.csv, TensorBoard logs "
        "and loss/success plots; --resume continues from OUT/last.",
        _run_train,
    ),
    "eval": Eval,
    "record": Record,
    "replay": Replay,
    "correct": Correct,
    "dagger": _command(
        "Dagger",
        DaggerConfig,
        "Round 0 trains on expert demos; each round runs the beta-mixture (dagger) or the "
        "policy under a simulated takeover gate (hg-dagger), labels with the expert, "
        "aggregates into OUT/data.hdf5, retrains and evaluates; success against expert "
        "labels goes to OUT/rounds.csv and OUT/success_vs_labels.png.",
        _run_dagger,
    ),
    "dart": _command(
        "Dart",
        DartConfig,
        "Each round re-estimates the noise covariance as the learner's error covariance on "
        "the states the noisy supervisor visited, measured with a policy not trained on them, "
        "demonstrates under that noise (labels stay clean), aggregates, retrains and evaluates.",
        _run_dart,
    ),
    "ppo": _command(
        "Ppo",
        PPOConfig,
        "Writes OUT/config.json, best/ (by evaluation success, then return) and last/ "
        "checkpoints that `iltk eval` and `iltk replay --policy` load (with the observation "
        "normalization), metrics.csv, TensorBoard logs and return/success plots; --resume "
        "continues from OUT/last.",
        _run_ppo,
    ),
    "finetune": _command(
        "Finetune",
        FinetuneSettings,
        "Writes OUT/config.json, best/ (by evaluation success, then return) and last/ "
        "checkpoints that `iltk eval`, `iltk replay --policy` and `iltk correct` load, "
        "metrics.csv (the start's evaluation at step 0), TensorBoard logs and return/success "
        "plots with the start and the end of the warm-up marked; --resume continues.",
        _run_finetune,
    ),
    "irl": _command(
        "Irl",
        IRLConfig,
        "Writes OUT/reward/ (`iltk ppo --reward OUT/reward`), OUT/policy/ (`iltk eval`, "
        "`iltk replay --policy`), last/, metrics.csv, TensorBoard logs and plots, among them "
        "plots/reward_heatmap.png (the learned reward over the task's plane, demonstrations "
        "drawn on it); tabular tasks write OUT/reward.npz and the grid's heatmaps.",
        _run_irl,
    ),
}
GROUPS: dict[str, dict[str, type]] = {"dataset": DATASET_COMMANDS}
CONFIG_COMMANDS = ("train", "dagger", "dart", "ppo", "finetune", "irl")
"""The commands whose runs record their settings, so `--config` can start one again."""


def main(argv: list[str] | None = None) -> int:
    from iltk import __version__

    argv = sys.argv[1:] if argv is None else argv
    ARGV[:] = argv
    quiet_progress_in_logs()
    if argv in (["--version"], ["-V"]):
        print(f"iltk {__version__}")
        return 0
    if argv in (["--help"], ["-h"]):
        print(_top_help(__version__))
        return 0
    cmd = None
    # SIGTERM ends a command as Ctrl-C does: its run closed, one line, exit 143
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    previous_int = signal.signal(signal.SIGINT, _on_sigint) if main_thread else None
    try:
        if argv and argv[0] in CONFIG_COMMANDS and "--config" in argv:
            cmd = _from_saved_config(argv[0], argv[1:])
        elif argv and argv[0] in GROUPS and len(argv) > 1:
            cmd = tyro.extras.subcommand_cli_from_dict(
                GROUPS[argv[0]], prog=f"iltk {argv[0]}", args=argv[1:], registry=REGISTRY
            )
        else:
            cmd = tyro.extras.subcommand_cli_from_dict(
                COMMANDS,
                prog="iltk",
                description=f"iltk {__version__}: imitation learning for robot manipulation in MuJoCo.",
                args=argv,
                registry=REGISTRY,
            )
        _log_notes_to_stderr()
        result = cmd.run()
    except BrokenPipeError as err:
        if not _stdout_gone():  # a pipe to a worker process, not our reader
            print(f"iltk: error: a worker process went away ({err}){_where_to_resume(cmd)}",
                  file=sys.stderr)  # fmt: skip
            return 2
        # the reader went away (`iltk --help | head`, `iltk dataset info F | head`): stop
        # quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (
        CliError,
        DatasetError,
        UnknownTaskError,
        FileNotFoundError,
        ValueError,
        RuntimeError,
    ) as err:
        print(f"iltk: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        from iltk.files import disk_error

        where = err.filename or "a file"
        print(f"iltk: error: {disk_error(err, where)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"iltk: terminated{_where_to_resume(cmd)}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        _interrupt_handled()
        print(f"iltk: interrupted{_where_to_resume(cmd)}", file=sys.stderr)
        return 130
    finally:
        from iltk import interrupts

        interrupts.clear()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
    return int(result or 0)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (so ``finally`` blocks close runs and files)."""


def _on_sigterm(signum, frame):
    from iltk import interrupts

    interrupts.note(Terminated)  # raised again at the next step if a callback drops it
    raise Terminated()


def _on_sigint(signum, frame):
    from iltk import interrupts

    interrupts.note(KeyboardInterrupt)
    raise KeyboardInterrupt()


def _interrupt_handled() -> None:
    """Tell CPython the Ctrl-C was handled. A KeyboardInterrupt raised inside code a C
    extension runs through ``PyRun_String`` (pybind11's ``exec``) sets the interpreter's
    ``_Py_UnhandledKeyboardInterrupt`` even when Python code catches it later, and at exit
    the interpreter then kills itself with SIGINT: exit -2 instead of 130."""
    import ctypes

    try:
        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (AttributeError, ValueError, OSError):
        pass  # another interpreter: nothing to reset


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return True


HELP_GROUPS = {
    "data": ("tasks", "collect", "dataset"),
    "at a device, in a window": ("record", "replay", "correct"),
    "training and evaluation": ("train", "eval", "dagger", "dart"),
    "reinforcement learning": ("ppo", "finetune", "irl"),
}


def _summary(cls: type) -> str:
    """The first sentence of a command's docstring."""
    import re

    first = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
    return re.split(r"(?<! al)\. ", first)[0].rstrip(".")


def _top_help(version: str) -> str:
    """`iltk --help`: one line per command, by group (each command's --help says the rest)."""
    import textwrap

    width = max(map(len, [*COMMANDS, "-V, --version"])) + 2

    def entry(name: str, text: str) -> list[str]:
        return textwrap.wrap(
            text,
            80,
            initial_indent=f"  {name:<{width}}",
            subsequent_indent=" " * (width + 2),
            break_on_hyphens=False,
        )

    lines = [
        "usage: iltk COMMAND [OPTIONS]    (iltk COMMAND --help: its options)",
        "",
        f"iltk {version}: imitation learning for robot manipulation in MuJoCo.",
    ]
    for group, names in HELP_GROUPS.items():
        lines += ["", f"{group}:"]
        lines += [line for name in names for line in entry(name, _summary(COMMANDS[name]))]
    lines += ["", "options:", *entry("-h, --help", "this message")]
    lines += entry("-V, --version", "the version")
    return "\n".join(lines)


def _from_saved_config(name: str, args: list[str]):
    """`iltk NAME --config FILE [flags]`: the settings a run's config.json records, with the
    flags given on top (``--resume`` / ``--overwrite`` are never taken from the file)."""

    from iltk.algos.settings import config_from_dict

    at = args.index("--config")
    if at + 1 >= len(args):
        raise CliError("--config needs a file: a run's config.json (e.g. runs/x/config.json)")
    path = Path(args[at + 1])
    rest = args[:at] + args[at + 2 :]
    if path.is_dir():
        path = path / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"--config {path}: no such file (a run folder's config.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CliError(f"--config {path}: not a JSON settings file ({err})") from None
    if not isinstance(data, dict):
        raise CliError(f"--config {path}: not a settings file (it holds no settings object)")
    cls = COMMANDS[name]
    data = {k: v for k, v in data.items() if k not in ("resume", "overwrite")}
    try:
        default = config_from_dict(cls, data, where=f"--config {path}")
    except TypeError as err:
        raise CliError(f"--config {path}: settings of the wrong kind ({err})") from None
    return tyro.cli(cls, args=rest, default=default, prog=f"iltk {name}", registry=REGISTRY)


def quiet_progress_in_logs() -> None:
    """Progress bars written to a log (stderr not a terminal) redraw every 30 s instead of
    every 0.1 s, so a log holds a few lines of them, not kilobytes (tqdm reads
    ``TQDM_MININTERVAL`` when it is first imported; a value already set is kept)."""
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", "30")


def _where_to_resume(cmd) -> str:
    """For an interrupted run: the checkpoint it left and how to go on from it."""
    out = getattr(cmd, "out", None)
    if out is None or not hasattr(cmd, "resume"):
        return ""
    rounds = Path(out) / "rounds.json"
    if rounds.is_file():  # dagger: a run goes on after its last completed round
        return f"; {out}: the same command with --resume goes on after its last completed round"
    if not (Path(out) / "last").is_dir():
        return ""
    return (
        f"; {Path(out) / 'last'} holds the last checkpoint: the same command with --resume goes on"
    )


def _log_notes_to_stderr() -> None:
    """Warnings of the library (logger "iltk") reach the user as one line each."""
    import logging

    class StderrLines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # the stream of the moment (tests swap sys.stderr between calls)
            print(f"iltk: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)

    logger = logging.getLogger("iltk")
    if not any(
        isinstance(h, StderrLines) or getattr(h, "iltk_cli", False) for h in logger.handlers
    ):
        handler = StderrLines()
        handler.iltk_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
