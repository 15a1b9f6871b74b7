"""The ``iltk`` command. Each subcommand is a dataclass whose attribute docstrings are its
``--help``; heavy modules (torch, teleop/pygame) are imported only by the subcommand that
needs them, so ``iltk --help`` stays fast and the library stays headless.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import tyro


class CliError(Exception):
    """An error whose message is the whole story: printed without a traceback."""


@dataclass
class Tasks:
    """List the registered iltk tasks with their spaces and episode limits."""

    def run(self) -> None:
        from iltk.envs import TASK_IDS, TASKS, make_env

        print(f"{'task':<22}{'obs':>6}{'act':>5}{'max steps':>11}{'control Hz':>12}")
        for task in TASK_IDS:
            env = make_env(task)
            print(
                f"{task:<22}{env.observation_space.shape[0]:>6}{env.action_space.shape[0]:>5}"
                f"{TASKS[task]['max_episode_steps']:>11}{env.unwrapped.control_freq:>12.0f}"
            )
            env.close()
        print("\nAny other gymnasium id (e.g. Reacher-v5) is accepted wherever a task id is.")


COMMANDS: dict[str, type] = {"tasks": Tasks}


def main(argv: list[str] | None = None) -> int:
    from iltk import __version__

    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--version"], ["-V"]):
        print(f"iltk {__version__}")
        return 0
    cmd = tyro.extras.subcommand_cli_from_dict(
        COMMANDS,
        prog="iltk",
        description=f"iltk {__version__}: imitation learning for robot manipulation in MuJoCo.",
        args=argv,
    )
    try:
        result = cmd.run()
    except CliError as err:
        print(f"iltk: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iltk: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
