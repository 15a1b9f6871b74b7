"""The ``iltk`` command. Each subcommand is a dataclass whose attribute docstrings are its
``--help``; heavy modules (torch, teleop/pygame) are imported only by the subcommand that
needs them, so ``iltk --help`` stays fast and the library stays headless.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro
from tyro.conf import Positional, Suppress
from tyro.constructors import ConstructorRegistry, StructConstructorSpec, StructTypeInfo

from iltk.algos.settings import (
    ChunkExecution,
    DaggerConfig,
    DartConfig,
    FinetuneSettings,
    IRLConfig,
    PPOConfig,
    TrainConfig,
)
from iltk.data.format import DatasetError
from iltk.envs import UnknownTaskError


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
            kind = Suppress[f.type] if f.name in from_data else f.type
            fields.append(dataclasses.replace(f, type=kind, helptext=helptext))
        return dataclasses.replace(spec, fields=tuple(fields))

    return registry


REGISTRY = _cli_registry()


class CliError(Exception):
    """An error whose message is the whole story: printed without a traceback."""


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif")


def _policy_for_task(
    checkpoint: Path, task: str | None, device: str = "cpu", chunk: ChunkExecution | None = None
):
    """Load a checkpoint and the task it acts in: (policy, task, env_kwargs); ``chunk``
    changes how a chunked policy acts."""
    from iltk.evaluate import check_policy_task
    from iltk.policies import load_checkpoint, resolve_device, set_chunk_execution

    policy, extra = load_checkpoint(checkpoint, resolve_device(device))
    if chunk is not None:
        try:
            set_chunk_execution(policy, **chunk.given())
        except ValueError as err:
            raise CliError(f"{checkpoint}: --chunk.*: {err}") from None
    task = task or extra.get("task")
    if not task:
        raise CliError(f"{checkpoint}: the checkpoint names no task; pass --task")
    env_kwargs = dict(extra.get("env_kwargs") or {}) if task == extra.get("task") else {}
    check_policy_task(policy, task, env_kwargs)
    return policy, task, env_kwargs


def _check_video(path: Path) -> None:
    """Refuse, before any episode runs, a video path that cannot be written."""
    from iltk.files import check_output

    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise CliError(
            f"{path}: --video needs a video file name ending in {', '.join(VIDEO_SUFFIXES)}"
        )
    check_output(path, overwrite=True, what="--video")


def _count(n: int, noun: str) -> str:
    """'1 episode', '2 episodes'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_session_numbers(cmd) -> None:
    """The numbers every teleop session takes (record, correct)."""
    if not (math.isfinite(cmd.control_freq) and 1.0 <= cmd.control_freq <= 500.0):
        raise CliError(f"--control-freq must be in [1, 500] Hz, got {cmd.control_freq}")
    if cmd.episodes < 0:
        raise CliError(f"--episodes must be >= 0 (0: until you quit), got {cmd.episodes}")
    if cmd.max_steps is not None and cmd.max_steps < 1:
        raise CliError(f"--max-steps must be >= 1, got {cmd.max_steps}")


def _check_render_size(size: tuple[int, int]) -> None:
    w, h = size
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise CliError(f"--render-size must be between 16 and 4096 pixels each, got {w} {h}")


@dataclass
class Tasks:
    """List the registered iltk tasks with their spaces and episode limits."""

    def run(self) -> None:
        from iltk.envs import TASK_IDS, TASKS, make_env

        print(f"{'task':<26}{'obs':>6}{'act':>5}{'max steps':>11}{'control Hz':>12}")
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
            "Any other gymnasium id (e.g. Reacher-v5) works where no scripted expert is needed "
            "(train, eval, replay --policy);\ncollect, dagger and dart need an iltk task."
        )


def panda_action_mode(task: str, action_mode: str) -> dict:
    """The env keyword for ``--action-mode`` (empty at the default), refused off the arm."""
    from iltk.envs import PANDA_TASK_IDS
    from iltk.envs.panda import ACTION_MODES

    if action_mode not in ACTION_MODES:
        raise CliError(
            f"--action-mode must be one of {', '.join(ACTION_MODES)} (cartesian: end-effector "
            f"velocity + gripper; joint: joint velocities + gripper), got {action_mode!r}"
        )
    if action_mode == "cartesian":
        return {}
    if task not in PANDA_TASK_IDS:
        raise CliError(f"--action-mode applies to the Panda tasks ({', '.join(PANDA_TASK_IDS)})")
    return {"action_mode": action_mode}


@dataclass
class Collect:
    """Record scripted-expert demonstrations of a task into an episode file.

    Runs the task's expert through the control loop in parallel envs, with an optional
    DART noise level (the executed action is noisy, the recorded label is clean). Appends
    when OUT exists (numbering continues; the settings must match the file's) unless
    --overwrite. A second writer of OUT is refused; a full disk stops at the first failed
    save with every saved episode kept.
    """

    task: str = "iltk/Push-v0"
    """Task id (iltk/<Name>-v0; see `iltk tasks`)."""
    episodes: int = 100
    """Number of episodes to save."""
    out: Path = Path("datasets/demos.hdf5")
    """Episode file to write (HDF5)."""
    num_envs: int = 1
    """Parallel environments (subprocesses when > 1)."""
    seed: int = 0
    """Episode k is reset with seed SEED + k."""
    success_only: bool = False
    """Save only successful episodes (collects until EPISODES are saved, at most 3x tries)."""
    dart_noise: float = 0.0
    """DART: std of Gaussian noise added to the executed action (labels stay clean)."""
    obs_mode: str = "state"
    """Observation mode of iltk tasks: state, pixels or state+pixels."""
    image_size: int = 84
    """Camera image side for pixel observations."""
    init_spread: float = 1.0
    """How widely iltk tasks spread their start layouts: 1 = the full ranges, 0 = one fixed
    layout (recorded in the file, so training evaluates and the viewer replays on the same)."""
    action_mode: str = "cartesian"
    """Panda tasks: cartesian (end-effector velocity + gripper) or joint (7 joint velocities
    + gripper)."""
    overwrite: bool = False
    """Replace OUT instead of appending to it."""

    def run(self) -> None:
        from iltk.collect import collect_demos
        from iltk.envs import TASK_IDS

        kwargs = {}
        if self.task in TASK_IDS:  # the MuJoCo tasks (tabular ones observe a state index)
            kwargs = {"obs_mode": self.obs_mode, "image_size": self.image_size}
            if self.init_spread != 1.0:
                kwargs["init_spread"] = self.init_spread
        elif self.init_spread != 1.0:
            raise CliError("--init-spread applies to the MuJoCo iltk tasks only")
        elif self.success_only:
            raise CliError(
                f"--success-only needs a task with a success test (the MuJoCo iltk tasks); "
                f"{self.task}'s episodes have none"
            )
        kwargs.update(panda_action_mode(self.task, self.action_mode))
        if self.episodes < 1:
            raise CliError("--episodes must be at least 1")
        if self.num_envs < 1:
            raise CliError("--num-envs must be at least 1")
        if not (math.isfinite(self.dart_noise) and 0.0 <= self.dart_noise <= 10.0):
            raise CliError(
                f"--dart-noise must be a noise std in [0, 10] (0: none), got {self.dart_noise}"
            )
        res = collect_demos(
            self.task,
            self.out,
            self.episodes,
            num_envs=self.num_envs,
            seed=self.seed,
            success_only=self.success_only,
            dart_noise=self.dart_noise,
            env_kwargs=kwargs,
            overwrite=self.overwrite,
        )
        rate = res.successes / max(res.attempted, 1)
        # tabular tasks have no success, only the reward their expert is soft-optimal for
        how = (
            f"expert success {res.successes}/{res.attempted} = {rate:.0%}"
            if self.task in TASK_IDS
            else f"expert's mean return {res.mean_return:.2f} over {res.attempted}"
        )
        print(f"saved {_count(res.saved, 'episode')} to {res.path} ({how})")


@dataclass
class Eval:
    """Evaluate a policy checkpoint: success rate with a 95% interval, mean return and
    episode length, per-episode JSON, and optionally a video."""

    policy: Path
    """The policy: a checkpoint folder (e.g. runs/NAME/best)."""
    task: str | None = None
    """Task id (default: the task the policy was trained for)."""
    episodes: int = 100
    """Episodes to run; episode k uses seed SEED + k."""
    seed: int = 100_000
    """First episode seed (training data used 0.., so the default is unseen)."""
    num_envs: int = 2
    """Parallel environments."""
    device: str = "auto"
    """auto, cpu or cuda."""
    video: Path | None = None
    """Also render the first two episodes to this mp4."""
    json: Path | None = None
    """Where the results go, per episode, as JSON (default: POLICY/eval.json)."""
    chunk: ChunkExecution = field(default_factory=ChunkExecution)
    """Chunked policies: how chunks are executed (default: as the checkpoint says)."""

    def run(self) -> None:
        from iltk.evaluate import evaluate_policy, policy_video
        from iltk.files import check_output

        if self.episodes < 1:
            raise CliError(f"--episodes must be at least 1, got {self.episodes}")
        if self.num_envs < 1:
            raise CliError(f"--num-envs must be at least 1, got {self.num_envs}")
        out = self.json or self.policy / "eval.json"
        if self.video:
            _check_video(self.video)
        policy, task, env_kwargs = _policy_for_task(self.policy, self.task, self.device, self.chunk)
        check_output(out, overwrite=True, what="--json")
        from tqdm.auto import tqdm

        with tqdm(total=self.episodes, desc=f"eval {task}", unit="ep") as bar:
            res = evaluate_policy(
                policy,
                task,
                self.episodes,
                seed=self.seed,
                num_envs=self.num_envs,
                env_kwargs=env_kwargs,
                progress=bar,
            )
        print(res.line())
        from iltk.files import atomic_write_text

        record = res.to_dict()
        if self.chunk.given():  # how the chunks were executed, where not as saved
            record["chunk_execution"] = self.chunk.given()
        atomic_write_text(out, json.dumps(record, indent=2))
        print(f"per-episode results: {out}")
        if self.video:
            policy_video(policy, task, self.video, seed=self.seed, env_kwargs=env_kwargs)
            print(f"video: {self.video}")


@dataclass
class Record:
    """Record demonstrations with a gamepad or the keyboard in a live MuJoCo window.

    Keyboard: arrows move x/y, W/S move z, Space toggles the gripper, Enter saves the
    episode and resets, Backspace discards it and resets, R resets without saving, Esc
    quits. Xbox-layout pad: left stick x/y, right stick vertical z, RT closes the gripper,
    A saves, B discards, X resets, Start quits (profiles remap the pad). Each episode starts
    at your first input (the window shows the scene live until then) and the HUD shows the
    time left; saves, discards and time-outs are shown in the window. A pad unplugged
    mid-episode pauses the session until it is back. Ctrl-C, SIGTERM or closing the window
    keeps every saved episode.
    """

    task: str = "iltk/Push-v0"
    """Task id."""
    out: Path = Path("datasets/demos_human.hdf5")
    """Episode file (appended to when it exists, under the same settings)."""
    input: Literal["auto", "gamepad", "keyboard"] = "auto"
    """Input device: auto uses a pad when one is plugged in, else the keyboard."""
    profile: str | None = None
    """Pad mapping: xbox, playstation, generic or a JSON file (default: by the pad's name)."""
    pad_index: int = 0
    """Which joystick to use when several are plugged in."""
    list_devices: bool = False
    """List the joysticks found, with their suggested profiles, and exit."""
    calibrate: bool = False
    """Show live axis and button values of the pad, and exit."""
    episodes: int = 0
    """Stop after this many saved episodes (0: until you quit)."""
    auto_save_after: int = 10
    """Save automatically after the task reports success for this many steps (0: off)."""
    dart_noise: float = 0.0
    """DART: std of Gaussian noise added to the executed action (the label stays clean)."""
    control_freq: float = 20.0
    """Control rate in Hz."""
    init_spread: float = 1.0
    """iltk tasks: spread of the start layouts (1: full ranges, 0: one fixed layout)."""
    operator: str = ""
    """Your name, stored with every episode."""
    seed: int = 0
    """Episode k is reset with seed SEED + k (continue after earlier sessions with a new seed)."""
    window: tuple[int, int] = (640, 640)
    """Initial window size (at least 480x480)."""
    render_size: tuple[int, int] | None = None
    """Camera image rendered each step (default: the size the window shows it at)."""
    keep_partial: bool = False
    """On quit, keep the episode in progress (flagged partial)."""
    keep_timeouts: bool = False
    """Save episodes that reach the time limit (default: discard them)."""
    max_steps: int | None = None
    """Episode limit in control steps (default: the task's; the HUD shows the time left)."""

    def run(self) -> None:
        from teleop.devices import DeviceNotFound, describe_joysticks, make_device

        if self.list_devices:
            pads = describe_joysticks()
            if not pads:
                print("no joysticks found (the keyboard is always available: --input keyboard)")
            for p in pads:
                print(
                    f"[{p['index']}] {p['name']}: {p['axes']} axes, {p['buttons']} buttons, "
                    f"{p['hats']} hats -> profile {p['profile']}"
                )
            return
        if self.calibrate:
            from teleop.calibrate import calibrate

            try:
                calibrate(self.pad_index)
            except RuntimeError as err:
                raise CliError(str(err)) from None
            return
        from iltk.files import check_output
        from teleop.session import TeleopSession

        check_output(self.out, append=True, what="--out")
        if not (math.isfinite(self.dart_noise) and 0.0 <= self.dart_noise <= 10.0):
            raise CliError(f"--dart-noise must be a noise std in [0, 10], got {self.dart_noise}")
        _check_session_numbers(self)
        if self.render_size is not None:
            _check_render_size(self.render_size)
        try:
            device = make_device(self.input, self.profile, self.pad_index)
        except DeviceNotFound as err:
            raise CliError(str(err)) from None
        session = TeleopSession(
            self.task,
            self.out,
            device,
            dart_noise=self.dart_noise,
            control_freq=self.control_freq,
            init_spread=self.init_spread,
            auto_save_after=self.auto_save_after,
            episodes=self.episodes,
            operator=self.operator,
            window_size=self.window,
            render_size=self.render_size,
            seed=self.seed,
            keep_partial=self.keep_partial,
            keep_timeouts=self.keep_timeouts,
            max_steps=self.max_steps,
        )
        res = session.run()
        print(
            f"saved {_count(len(res.saved), 'episode')} to {self.out} ({res.discarded} discarded); "
            f"control rate {res.achieved_hz:.1f} Hz, {res.missed_deadlines} missed deadlines"
        )


@dataclass
class Replay:
    """Replay recorded episodes exactly (from their states), or watch a policy act live.

    Replay keys: Space play/pause, Left/Right step, +/- speed, N/P next/previous episode,
    Home restart, Esc quit. Policy keys: R resets the episode, Esc quits. With --video
    nothing is shown: the frames go to an mp4 (headless).
    """

    file: Positional[Path | None] = None
    """Episode file to replay."""
    episode: int | None = None
    """Episode index to show (default: start at the first; with --video: all)."""
    policy: Path | None = None
    """A policy checkpoint to watch instead of a file."""
    task: str | None = None
    """Task for --policy (default: the one it was trained on)."""
    episodes: int = 0
    """With --policy: stop after this many episodes (0: until Esc; --video: 2)."""
    seed: int = 100_000
    """With --policy: first episode seed."""
    video: Path | None = None
    """Render to this mp4 instead of opening a window."""
    window: tuple[int, int] = (640, 640)
    """Window size."""
    render_size: tuple[int, int] = (320, 240)
    """Rendered image size."""
    chunk: ChunkExecution = field(default_factory=ChunkExecution)
    """With --policy, a chunked one: how chunks are executed (default: as the checkpoint says)."""

    def run(self) -> None:
        _check_render_size(self.render_size)
        if self.video:
            _check_video(self.video)
        if self.episodes < 0:
            raise CliError(f"--episodes must be >= 0 (0: until Esc), got {self.episodes}")
        if self.policy is not None:
            policy, task, env_kwargs = _policy_for_task(self.policy, self.task, chunk=self.chunk)
            if self.video:
                from iltk.evaluate import policy_video

                eps = policy_video(
                    policy,
                    task,
                    self.video,
                    episodes=self.episodes or 2,
                    seed=self.seed,
                    env_kwargs=env_kwargs,
                )
                print(
                    f"wrote {self.video}: {sum(e.success for e in eps)}/{len(eps)} episodes successful"
                )
                return
            from teleop.viewer import watch_policy

            watch_policy(
                policy,
                task,
                episodes=self.episodes,
                seed=self.seed,
                env_kwargs=env_kwargs,
                window_size=self.window,
                render_size=self.render_size,
            )
            return
        if self.file is None:
            raise CliError("give an episode file to replay, or --policy CHECKPOINT")
        from iltk.data import DemoFile

        with DemoFile(self.file, validate="structure") as f:
            count = len(f.demos)
        if count == 0:
            raise CliError(f"{self.file}: holds no episodes to replay")
        if self.episode is not None and not 0 <= self.episode < count:
            raise CliError(
                f"{self.file}: has {count} episodes, numbered 0 to {count - 1}; "
                f"--episode {self.episode} does not exist"
            )
        if self.video:
            from iltk.replay import replay_video

            eps = None if self.episode is None else [self.episode]
            replay_video(self.file, self.video, eps, self.render_size)
            print(f"wrote {self.video}")
            return
        from teleop.viewer import replay_window

        replay_window(self.file, self.episode, self.window, self.render_size)


def _run_dagger(cfg) -> None:
    from iltk.algos.dagger import run_dagger

    last = run_dagger(cfg)[-1]
    print(
        f"{cfg.variant}: {last['expert_labels']} expert labels, final success "
        f"{last['success_rate']:.0%}; policy in {cfg.out / 'policy'}, log in {cfg.out / 'rounds.csv'}"
    )


def _run_dart(cfg) -> None:
    from iltk.algos.dart import run_dart

    last = run_dart(cfg)[-1]
    print(
        f"dart: {last['expert_labels']} labels, noise std {last['noise_std']}, final success "
        f"{last['success_rate']:.0%}; policy in {cfg.out / 'policy'}"
    )


@dataclass
class Correct:
    """Correct a policy at the gamepad (or keyboard) in a live window.

    hg-dagger: the policy drives; hold the takeover button (pad: RB, keyboard: T) to drive
    yourself; those steps are flagged as interventions; release to hand back. dagger: the
    policy drives (or you, with probability --beta) and your stick is recorded as the label
    at every step. Saving, discarding and resetting use the recording bindings (Enter /
    Backspace / R / Esc; pad A / B / X / Start). --retrain-every N retrains in a background
    process every N saved episodes and swaps the new policy in at the next episode.
    """

    policy: Path
    """The checkpoint to correct (e.g. runs/NAME/best)."""
    task: str | None = None
    """Task (default: the one the policy was trained on)."""
    out: Path = Path("datasets/corrections.hdf5")
    """Episode file for the corrections (appended to)."""
    mode: Literal["hg-dagger", "dagger"] = "hg-dagger"
    """hg-dagger (take over while a button is held) or dagger (label every step)."""
    beta: float = 0.0
    """dagger: probability that your command, not the policy's, is executed."""
    input: Literal["auto", "gamepad", "keyboard"] = "auto"
    """Input device: auto uses a pad when one is plugged in, else the keyboard."""
    profile: str | None = None
    """Pad mapping (xbox, playstation, generic or a JSON file)."""
    pad_index: int = 0
    """Which joystick to use when several are plugged in (`iltk record --list-devices`)."""
    retrain_every: int = 0
    """Retrain in the background every N saved episodes (0: never)."""
    retrain_steps: int = 1000
    """Gradient steps per background retraining."""
    episodes: int = 0
    """Stop after this many saved episodes (0: until you quit)."""
    control_freq: float = 20.0
    """Control rate in Hz."""
    init_spread: float | None = None
    """iltk tasks: spread of the start layouts (default: the one the policy was trained on)."""
    operator: str = ""
    """Your name, stored with every episode."""
    seed: int = 0
    """Episode k is reset with seed SEED + k."""
    keep_timeouts: bool = False
    """Save episodes that reach the time limit (default: discard them)."""
    max_steps: int | None = None
    """Episode limit in control steps (default: the task's; the HUD shows the time left)."""

    def run(self) -> None:
        from iltk.files import check_output
        from teleop.devices import DeviceNotFound, make_device
        from teleop.session import TeleopSession

        check_output(self.out, append=True, what="--out")
        _check_session_numbers(self)
        if not 0.0 <= self.beta <= 1.0:
            raise CliError(f"--beta must be a probability in [0, 1], got {self.beta}")
        if self.retrain_every < 0 or self.retrain_steps < 1:
            raise CliError("--retrain-every must be >= 0 and --retrain-steps >= 1")
        policy, task, trained = _policy_for_task(self.policy, self.task)
        spread = self.init_spread
        if spread is None:
            spread = float(trained.get("init_spread", 1.0))
        try:
            device = make_device(self.input, self.profile, self.pad_index)
        except DeviceNotFound as err:
            raise CliError(str(err)) from None
        session = TeleopSession(
            task,
            self.out,
            device,
            mode=self.mode,
            policy=policy,
            beta=self.beta,
            control_freq=self.control_freq,
            init_spread=spread,
            auto_save_after=0,
            episodes=self.episodes,
            operator=self.operator,
            seed=self.seed,
            retrain_every=self.retrain_every,
            retrain_steps=self.retrain_steps,
            keep_timeouts=self.keep_timeouts,
            max_steps=self.max_steps,
        )
        res = session.run()
        print(
            f"saved {_count(len(res.saved), 'episode')} to {self.out}; "
            f"{_count(res.interventions, 'intervention step')}"
        )


# ------------------------------------------------------------------ iltk dataset ...
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

    def run(self) -> None:
        from iltk.data.format import SOURCES
        from iltk.data.tools import filter_file

        unknown = [s for s in self.source if s not in SOURCES]
        if unknown:
            raise CliError(
                f"--source {' '.join(unknown)}: unknown; sources are {', '.join(SOURCES)}"
            )
        if self.min_length < 0:
            raise CliError(f"--min-length must be >= 0, got {self.min_length}")
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

    def run(self) -> int:
        from iltk.data import DemoFile
        from iltk.replay import verify_file

        if self.episodes < 0:
            raise CliError(f"--episodes must be >= 0 (0: all), got {self.episodes}")
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

    def run(self) -> None:
        from iltk.data import DemoFile, consolidate_file
        from iltk.files import WriterLock, check_output

        with DemoFile(self.file, validate="structure"):
            pass
        check_output(self.file, append=True, what="FILE")
        with WriterLock(self.file, "writing"):
            consolidate_file(self.file)
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


def _run_train(cfg) -> int | None:
    if not cfg.dataset.exists():
        raise CliError(f"{cfg.dataset}: no such dataset file (make one with 'iltk collect')")
    if cfg.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        from iltk.distributed import launch

        code = launch(cfg.nproc, _ARGV)
        if code == 130:  # Ctrl-C: torchrun stopped every rank
            raise KeyboardInterrupt
        if code != 0:
            raise CliError(
                f"the {cfg.nproc}-process run failed (exit status {code}; the failing rank's "
                f"error is above); {cfg.out / 'last'} holds the last complete checkpoint: fix "
                "the cause and run the same command with --resume"
            )
        return None
    from iltk.algos.supervised import train

    res = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return None  # rank 0 reports for the job
    final = res["final"] or {}
    msg = f"trained {cfg.algo} for {res['steps']} steps on {res['device']} in {res['train_time_s']:.0f}s"
    if final.get("success_rate") is not None:
        msg += f"; final success {final['success_rate']:.0%}"
    print(msg)
    print(f"checkpoints: {cfg.out / 'best'} and {cfg.out / 'last'}; plots in {cfg.out / 'plots'}")


def _run_ppo(cfg) -> None:
    from iltk.algos.ppo import train_ppo

    res = train_ppo(cfg)
    final = res["final"]
    msg = f"ppo: {res['env_steps']} env steps in {res['train_time_s']:.0f}s"
    if final.get("eval_return") is not None:
        msg += f"; evaluation return {final['eval_return']:.1f}"
        msg += f", success {final['eval_success']:.0%}"
    print(msg)
    print(f"checkpoints: {cfg.out / 'best'} and {cfg.out / 'last'}; plots in {cfg.out / 'plots'}")


def _run_irl(cfg) -> None:
    from iltk.algos.irl.run import train_irl

    res = train_irl(cfg)
    if "iterations" in res:  # tabular
        print(
            f"irl: {res['iterations']} iterations in {res['train_time_s']:.1f}s "
            f"({'converged' if res['converged'] else 'not converged'}); max visitation error "
            f"{res['visitation_linf']:.2g}; correlation with the true reward "
            f"{res['reward_correlation_with_true']:.2f}"
        )
        print(f"reward: {res['reward']}; plots: {', '.join(res['plots']) or 'none'}")
        return
    final = res["final"]
    msg = f"irl: {res['env_steps']} env steps on {res['demos']} demos in {res['train_time_s']:.0f}s"
    if final.get("eval_success") is not None:
        msg += f"; the policy's evaluation success {final['eval_success']:.0%}"
        msg += f" (return {final['eval_return']:.1f} on the task's reward, never trained on)"
    print(msg)
    out = Path(res["reward"]).parent
    print(
        f"reward: {res['reward']} (iltk ppo --reward {res['reward']}); policy: {res['policy']}; "
        f"plots in {out / 'plots'}"
    )


def _run_finetune(cfg) -> None:
    from iltk.algos.finetune import finetune

    res = finetune(cfg)
    start, final = res.get("start") or {}, res["final"]
    msg = f"finetune: {res['env_steps']} env steps in {res['train_time_s']:.0f}s"
    if start.get("eval_success") is not None and final.get("eval_success") is not None:
        msg += f"; success {start['eval_success']:.0%} (start) -> {final['eval_success']:.0%}"
    print(msg)
    print(f"checkpoints: {cfg.out / 'best'} and {cfg.out / 'last'}; plots in {cfg.out / 'plots'}")


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


_ARGV: list[str] = []  # this invocation's arguments (`iltk train --nproc` passes them on)


def main(argv: list[str] | None = None) -> int:
    from iltk import __version__

    global _ARGV
    argv = sys.argv[1:] if argv is None else argv
    _ARGV = list(argv)
    if argv in (["--version"], ["-V"]):
        print(f"iltk {__version__}")
        return 0
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
    except BrokenPipeError:
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
    except KeyboardInterrupt:
        print("iltk: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def _from_saved_config(name: str, args: list[str]):
    """`iltk NAME --config FILE [flags]`: the settings a run's config.json records, with the
    flags given on top (``--resume`` / ``--overwrite`` are never taken from the file)."""
    import json

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


if __name__ == "__main__":
    sys.exit(main())
