"""The data commands: `iltk tasks`, `iltk collect` and `iltk dataset ...`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import tyro
from tyro.conf import Positional

from iltk.algos.settings import CollectConfig
from iltk.cli.common import (
    REGISTRY,
    CliError,
    _check_file_name,
    _count,
)


@dataclass
class Tasks:
    """List the registered iltk tasks with their spaces and episode limits."""

    def run(self) -> None:
        from iltk.envs import TASK_IDS, TASKS, make_env

        print(f"{'task':<26}{'obs':>6}{'act':>5}{'max steps':>11}{'control Hz':>12}")
        # (tabular tasks, at the end: obs and act are the numbers of states and actions)
        for task in TASK_IDS:
            env = make_env(task)
            space = env.observation_space
            keys = getattr(space, "spaces", {"state": space})  # the arm: robomimic's keys
            obs = sum(math.prod(s.shape) for s in keys.values())
            print(
                f"{task:<26}{obs:>6}{env.action_space.shape[0]:>5}"
                f"{TASKS[task]['max_episode_steps']:>11}{env.unwrapped.control_freq:>12.0f}"
            )
            env.close()
        from iltk.envs import TABULAR_TASKS

        for task in TABULAR_TASKS:  # a state index in, an action index out (for IRL)
            env = make_env(task)
            print(
                f"{task:<26}{env.observation_space.n:>6}{env.action_space.n:>5}"
                f"{env.unwrapped.mdp.horizon:>11}{'-':>12}"
            )
            env.close()
        import textwrap

        print()
        print(
            textwrap.fill(
                "Options of every iltk task (gymnasium.make keyword arguments): obs_mode "
                "(state, pixels, state+pixels), image_size, control_freq, terminate_on_success, "
                "init_spread (1: start layouts drawn from the full ranges; 0: one fixed layout; "
                "`iltk collect --init-spread`, `iltk dagger/dart --init-spread`). The Panda "
                "tasks also take action_mode (cartesian: end-effector velocity, angular "
                "velocity, gripper; joint: 7 joint velocities, gripper; `--action-mode`) and "
                "observe a dict with robomimic's keys (robot0_eef_pos, robot0_eef_quat, "
                "robot0_gripper_qpos, object; cameras agentview and robot0_eye_in_hand).",
                width=88,
            )
        )
        print(
            "The tabular tasks (iltk/ObjectWorld-v0, iltk/RandomMDP-v0) count states and actions "
            "in the obs and act columns;\ntheir episodes are the MDP's horizon (for `iltk irl`)."
        )
        print(
            "Any other gymnasium id (e.g. Reacher-v5) works where no scripted expert is needed "
            "(train, eval, replay --policy);\ncollect, dagger and dart need an iltk task."
        )


@dataclass
class Collect(CollectConfig):
    __doc__ = CollectConfig.__doc__

    def __post_init__(self):
        super().__post_init__()
        _check_file_name("--out", self.out, "demos.hdf5")

    def run(self) -> None:
        from iltk.collect import collect
        from iltk.envs import TASK_IDS

        res = collect(self)
        rate = res.successes / max(res.attempted, 1)
        # tabular tasks have no success, only the reward their expert is soft-optimal for
        how = (
            f"expert success {res.successes}/{res.attempted} = {rate:.0%}"
            if self.task in TASK_IDS
            else f"expert's mean return {res.mean_return:.2f} over {res.attempted}"
        )
        print(f"saved {_count(res.saved, 'episode')} to {res.path} ({how})")


@dataclass
class DatasetInfo:
    """Summarize an episode file: episodes, steps, success, sources, keys, action ranges."""

    file: Positional[Path]
    """The episode file."""
    json: bool = False
    """Print the summary as JSON."""

    def run(self) -> None:
        from iltk.data import DemoFile

        with DemoFile(self.file) as f:
            info = f.summary()
        if self.json:
            print(json.dumps(info, indent=2))
            return
        rate = info["success_rate"]
        print(f"file        {info['file']}")
        print(f"env         {info['env_name']}  (format v{info['format_version']})")
        print(
            f"episodes    {info['episodes']}   steps {info['steps']}   mean length {info['mean_length']:.1f}"
        )
        print(f"success     {'n/a' if rate is None else f'{rate:.1%}'}")
        print(f"sources     {', '.join(f'{k}: {v}' for k, v in info['sources'].items()) or '-'}")
        print(f"operators   {', '.join(f'{k}: {v}' for k, v in info['operators'].items()) or '-'}")
        print(f"masks       {', '.join(f'{k}: {v}' for k, v in info['masks'].items()) or '-'}")
        print(f"intervention fraction {info['intervention_fraction']:.3f}")
        if info["action_min"] is not None:
            lo = ", ".join(f"{x:+.2f}" for x in info["action_min"])
            hi = ", ".join(f"{x:+.2f}" for x in info["action_max"])
            print(f"action range [{lo}] .. [{hi}]")
        print("keys")
        for k, v in info["keys"].items():
            print(f"  {k:<28} {str(tuple(v['shape'])):<16} {v['dtype']}")
        if info["linked_shards"]:
            print(
                f"({info['linked_shards']} episodes live in shard files; 'iltk dataset consolidate' folds them in)"
            )


@dataclass
class DatasetMerge:
    """Concatenate the episodes of several files (same env) into a new file."""

    out: Positional[Path]
    """The merged file to write (refused when it exists, unless --overwrite)."""
    inputs: Positional[list[Path]]
    """Files to merge, in order (each once)."""
    overwrite: bool = False
    """Replace OUT when it exists (never allowed when OUT is one of the inputs)."""

    def run(self) -> None:
        from iltk.data.tools import merge_files

        n = merge_files(self.inputs, self.out, overwrite=self.overwrite)
        print(f"wrote {_count(n, 'episode')} to {self.out}")


@dataclass
class DatasetSplit:
    """Write train/valid masks (mask/train, mask/valid) into a file."""

    file: Positional[Path]
    """The episode file (rewritten atomically)."""
    valid_fraction: float = 0.1
    """Fraction of episodes held out for validation."""
    seed: int = 0
    """Seed of the random split."""

    def run(self) -> None:
        from iltk.data.tools import split_file

        masks = split_file(self.file, self.valid_fraction, self.seed)
        print(f"{self.file}: train {len(masks['train'])} episodes, valid {len(masks['valid'])}")


@dataclass
class DatasetFilter:
    """Copy the episodes that pass the filters into a new file."""

    file: Positional[Path]
    """The source episode file."""
    out: Positional[Path]
    """The filtered file to write."""
    success_only: bool = False
    """Keep only successful episodes."""
    source: list[str] = field(default_factory=list)
    """Keep only these sources (human, scripted, policy, dagger, hg-dagger, dart)."""
    min_length: int = 0
    """Drop episodes shorter than this."""
    overwrite: bool = False
    """Replace OUT when it exists (never allowed when OUT is FILE)."""

    def __post_init__(self):
        from iltk.data.format import SOURCES

        unknown = [s for s in self.source if s not in SOURCES]
        if unknown:
            raise CliError(
                f"--source {' '.join(unknown)}: unknown; sources are {', '.join(SOURCES)}"
            )
        if self.min_length < 0:
            raise CliError(f"--min-length must be >= 0, got {self.min_length}")

    def run(self) -> None:
        from iltk.data.tools import filter_file

        n = filter_file(
            self.file,
            self.out,
            success_only=self.success_only,
            sources=self.source,
            min_length=self.min_length,
            overwrite=self.overwrite,
        )
        print(f"wrote {_count(n, 'episode')} to {self.out}")


@dataclass
class DatasetVerify:
    """Re-simulate every episode from its seed with its executed actions and report how far
    the simulation diverges from the recorded states and observations (0 = exact)."""

    file: Positional[Path]
    """The episode file."""
    episodes: int = 0
    """Verify only the first N episodes (0: all)."""

    def __post_init__(self):
        if self.episodes < 0:
            raise CliError(f"--episodes must be >= 0 (0: all), got {self.episodes}")

    def run(self) -> int:
        from iltk.data import DemoFile
        from iltk.replay import verify_file

        with DemoFile(self.file) as f:
            demos = f.demos[: self.episodes] if self.episodes else f.demos
        rows = verify_file(self.file, demos)
        print(
            f"{'demo':<10}{'steps':>6}{'init err':>11}{'max state err':>15}{'max obs err':>13}  success rec/replay"
        )
        for r in rows:
            print(
                f"{r.demo:<10}{r.steps:>6}{r.initial_state_error:>11.2e}{r.max_state_error:>15.2e}"
                f"{r.max_obs_error:>13.2e}  {r.recorded_success}/{r.replayed_success}"
            )
        exact = sum(r.exact for r in rows)
        print(f"{exact}/{len(rows)} episodes re-simulate exactly")
        return 0 if exact == len(rows) else 1


@dataclass
class DatasetConsolidate:
    """Fold a file's shard folder (left by an interrupted recording) into the file itself."""

    file: Positional[Path]
    """The episode file."""
    skip_damaged: bool = False
    """Fold in every readable episode and leave out those whose shard is missing or
    damaged (the damaged shards are moved to FILE.damaged/, never deleted)."""

    def run(self) -> None:
        from iltk.data import DemoFile, consolidate_file
        from iltk.files import WriterLock, check_output

        # (a structure check reads every episode: the damaged ones are what it would stop at)
        with DemoFile(self.file, validate="none" if self.skip_damaged else "structure"):
            pass
        check_output(self.file, append=True, what="FILE")
        with WriterLock(self.file):
            left_out = consolidate_file(self.file, skip_damaged=self.skip_damaged)
        if left_out:
            shown = ", ".join(left_out[:8]) + (" ..." if len(left_out) > 8 else "")
            print(
                f"{self.file}: consolidated without {_count(len(left_out), 'damaged episode')}"
                f" ({shown}); their shards are in {self.file}.damaged/"
            )
        else:
            print(f"{self.file}: consolidated")


DATASET_COMMANDS: dict[str, type] = {
    "info": DatasetInfo,
    "merge": DatasetMerge,
    "split": DatasetSplit,
    "filter": DatasetFilter,
    "verify": DatasetVerify,
    "consolidate": DatasetConsolidate,
}


@dataclass
class Dataset:
    """Inspect and edit episode files: info, merge, split, filter, verify, consolidate
    (`iltk dataset <command> --help`)."""

    def run(self) -> None:
        tyro.extras.subcommand_cli_from_dict(
            DATASET_COMMANDS, prog="iltk dataset", args=["--help"], registry=REGISTRY
        )
