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
        who = "policy" if res.source == "policy" else "expert"
        # tabular and gymnasium tasks have no success, only a return
        how = (
            f"{who} success {res.successes}/{res.attempted} = {rate:.0%}"
            if res.task in TASK_IDS
            else f"{who}'s mean return {res.mean_return:.2f} over {res.attempted}"
        )
        print(f"saved {_count(res.saved, 'episode')} to {res.path} ({how})")


@dataclass
class DatasetInfo:
    """Summarize an episode file (episodes, steps, success, sources, keys, action ranges) or
    a LeRobot dataset folder (version, episodes, frames, fps, tasks, splits, features)."""

    file: Positional[Path]
    """The episode file, or a LeRobot dataset folder."""
    json: bool = False
    """Print the summary as JSON."""

    def run(self) -> None:
        from iltk.data import DemoFile

        if self.file.is_dir() and (self.file / "meta" / "info.json").is_file():
            return self._lerobot()
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

    def _lerobot(self) -> None:
        """A LeRobot dataset folder: its version, size, features and splits."""
        from iltk.data.lerobot import open_lerobot

        folder = open_lerobot(self.file)
        info = folder.info
        frames = sum(int(r["length"]) for r in folder.episodes)
        summary = {
            "folder": str(folder.root),
            "format": f"LeRobotDataset {folder.version}",
            "episodes": len(folder.episodes),
            "frames": frames,
            "fps": info.get("fps"),
            "tasks": sorted(set(folder.tasks.values())),
            "splits": info.get("splits"),
            "features": {
                k: {"dtype": v.get("dtype"), "shape": v.get("shape")}
                for k, v in folder.features.items()
            },
            "exported_by_iltk": "iltk" in info,
        }
        if self.json:
            print(json.dumps(summary, indent=2))
            return
        print(f"folder      {summary['folder']}  ({summary['format']})")
        print(f"episodes    {summary['episodes']}   frames {frames}   fps {summary['fps']}")
        print(f"tasks       {'; '.join(summary['tasks']) or '-'}")
        print(f"splits      {summary['splits']}")
        print("features")
        for k, v in summary["features"].items():
            print(f"  {k:<36} {str(tuple(v['shape'] or ())):<16} {v['dtype']}")
        if summary["exported_by_iltk"]:
            print("(exported by iltk: 'iltk dataset import' gives back the episode file)")


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


@dataclass
class DatasetExport:
    """Write an episode file as a LeRobot dataset folder (LeRobotDataset v3.0: parquet
    tables, one mp4 video per camera, meta/info.json, stats, episode and task tables) that
    LeRobot's own loader reads. iltk's extra per-step fields (actions_executed,
    intervention, sim states, policy actions, noise) travel as iltk.* features, so the
    folder imports back to the same file. Written under a temporary name and renamed into
    place at the end: an interrupted export leaves no folder that looks complete."""

    file: Positional[Path]
    """The episode file (HDF5)."""
    out_dir: Positional[Path]
    """The dataset folder to write (refused when it exists and is not empty, unless
    --overwrite)."""
    format: str = "lerobot"
    """The dataset format (lerobot: LeRobotDataset v3.0)."""
    fps: float | None = None
    """Frames per second (default: the file's control rate)."""
    codec: str = "h264"
    """Video codec of the cameras: h264 (libx264) or av1 (libsvtav1, LeRobot's default)."""
    crf: int | None = None
    """Constant rate factor of the codec, lower for closer frames and larger files
    (default: 18 for h264, 30 for av1)."""
    gop: int = 2
    """Frames between keyframes (LeRobot's 2 keeps random access cheap)."""
    task: str | None = None
    """Task text of the episodes that have none (default: the task's description)."""
    overwrite: bool = False
    """Replace OUT_DIR when it exists."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        _check_format(self.format)
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise CliError(f"--fps must be a positive number, got {self.fps}")

    def run(self) -> None:
        from iltk.data.lerobot import export_lerobot

        res = export_lerobot(
            self.file,
            self.out_dir,
            fps=self.fps,
            codec=self.codec,
            crf=self.crf,
            gop=self.gop,
            task=self.task,
            overwrite=self.overwrite,
            progress=self.progress,
        )
        videos = f", {len(res.videos)} video feature(s)" if res.videos else ""
        print(
            f"wrote {_count(res.episodes, 'episode')} ({res.frames} frames{videos}) to "
            f"{res.out} (LeRobotDataset v3.0)"
        )


@dataclass
class DatasetImport:
    """Read a LeRobot dataset folder (LeRobotDataset v3.0, or v2.1, the layout before it)
    into an episode file that `iltk train` takes; camera videos are decoded into images. A
    folder exported by iltk comes back as the file it was; one from elsewhere has no sim
    states (exact replay and `dataset verify` say so), its actions_executed are its actions
    and no step is an intervention."""

    src: Positional[Path]
    """The LeRobot dataset folder."""
    out: Positional[Path]
    """The episode file to write (HDF5)."""
    format: str = "lerobot"
    """The dataset format (lerobot: LeRobotDataset v3.0 or v2.1)."""
    task: str | None = None
    """The task id the episodes belong to (e.g. iltk/Push-v0), for training's evaluation
    (default: the one an iltk export records)."""
    overwrite: bool = False
    """Replace OUT when it exists."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        _check_format(self.format)
        _check_file_name("OUT", self.out, "demos.hdf5")

    def run(self) -> None:
        from iltk.data.lerobot import import_lerobot

        res = import_lerobot(
            self.src,
            self.out,
            env_name=self.task,
            overwrite=self.overwrite,
            progress=self.progress,
        )
        print(
            f"wrote {_count(res.episodes, 'episode')} ({res.frames} steps) to {res.out}"
            + ("" if res.from_iltk else " (from a LeRobot dataset: no sim states)")
        )


def _check_format(name: str) -> None:
    if name != "lerobot":
        raise CliError(f"--format {name}: unknown; formats are lerobot (LeRobotDataset v3.0)")


@dataclass
class DatasetDelete:
    """Drop episodes from a file (bad takes). The others keep their names, masks lose the
    dropped ones, and the file's edit history records the deletion. The file is rewritten
    through a temporary file and renamed into place (or --out writes a new file)."""

    file: Positional[Path]
    """The episode file."""
    episodes: list[str] = field(default_factory=list)
    """Episodes to drop, by index (3 = demo_3) or name."""
    out: Path | None = None
    """Write the result to this new file instead of replacing FILE."""
    overwrite: bool = False
    """Replace --out when it exists."""

    def __post_init__(self):
        if not self.episodes:
            raise CliError("--episodes: name the episodes to drop (e.g. --episodes 3 7)")

    def run(self) -> None:
        from iltk.data.tools import delete_episodes

        dropped = delete_episodes(self.file, self.episodes, out=self.out, overwrite=self.overwrite)
        print(
            f"{self.out or self.file}: dropped {_count(len(dropped), 'episode')} ({', '.join(dropped)})"
        )


@dataclass
class DatasetEdit:
    """Set episode metadata: the operator, the task text (LeRobot's task on export), the
    success flag. Rewritten like `dataset delete`; the edit history records the change."""

    file: Positional[Path]
    """The episode file."""
    episodes: list[str] = field(default_factory=list)
    """Episodes to edit, by index (3 = demo_3) or name (none: every episode)."""
    operator: str | None = None
    """The operator's name."""
    task: str | None = None
    """The task text."""
    success: bool | None = None
    """The success flag."""
    out: Path | None = None
    """Write the result to this new file instead of replacing FILE."""
    overwrite: bool = False
    """Replace --out when it exists."""

    def __post_init__(self):
        if self.operator is None and self.task is None and self.success is None:
            raise CliError("nothing to set: pass --operator, --task or --success True/False")

    def run(self) -> None:
        from iltk.data.tools import edit_episodes

        updates = {
            k: v
            for k, v in (
                ("operator", self.operator),
                ("task", self.task),
                ("success", self.success),
            )
            if v is not None
        }
        edited = edit_episodes(
            self.file, self.episodes, updates, out=self.out, overwrite=self.overwrite
        )
        shown = ", ".join(f"{k}={v!r}" for k, v in updates.items())
        print(f"{self.out or self.file}: set {shown} on {_count(len(edited), 'episode')}")


DATASET_COMMANDS: dict[str, type] = {
    "info": DatasetInfo,
    "merge": DatasetMerge,
    "split": DatasetSplit,
    "filter": DatasetFilter,
    "verify": DatasetVerify,
    "consolidate": DatasetConsolidate,
    "export": DatasetExport,
    "import": DatasetImport,
    "delete": DatasetDelete,
    "edit": DatasetEdit,
}


@dataclass
class Dataset:
    """Inspect and edit episode files: info, merge, split, filter, verify, consolidate,
    export and import (LeRobot's format), delete and edit episodes (`iltk dataset <command>
    --help`)."""

    def run(self) -> None:
        tyro.extras.subcommand_cli_from_dict(
            DATASET_COMMANDS, prog="iltk dataset", args=["--help"], registry=REGISTRY
        )
