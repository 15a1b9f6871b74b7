"""The windowed commands: `iltk record`, `iltk replay`, `iltk correct` (teleop is imported
when they run, never for --help)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tyro.conf import Positional

from iltk.algos.settings import (
    ChunkExecution,
)
from iltk.cli.common import (
    CliError,
    _check_file_name,
    _count,
    _refuse_invisible_window,
)
from teleop import options as teleop_options


@dataclass
class SessionOptions(teleop_options.SessionOptions):
    """What every windowed session at a device takes (`iltk record`, `iltk correct`)."""

    def make_device(self):
        from teleop.devices import DeviceNotFound

        try:
            return super().make_device()
        except DeviceNotFound as err:
            raise CliError(str(err)) from None

    def options(self) -> teleop_options.SessionOptions:
        """These options as the session reads them (the command's own fields left out)."""
        fields = dataclasses.fields(teleop_options.SessionOptions)
        return teleop_options.SessionOptions(**{f.name: getattr(self, f.name) for f in fields})


@dataclass
class Record(SessionOptions):
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
    list_devices: bool = False
    """List the joysticks found, with their suggested profiles, and exit."""
    calibrate: bool = False
    """Show live axis and button values of the pad, and exit."""
    auto_save_after: int = 10
    """Save automatically after the task reports success for this many steps (0: off)."""
    dart_noise: float = 0.0
    """DART: std of Gaussian noise added to the executed action (the label stays clean)."""
    init_spread: float = 1.0
    """iltk tasks: spread of the start layouts (1: full ranges, 0: one fixed layout)."""
    keep_partial: bool = False
    """On quit, keep the episode in progress (flagged partial)."""

    def __post_init__(self):
        super().__post_init__()
        if not (math.isfinite(self.dart_noise) and 0.0 <= self.dart_noise <= 10.0):
            raise CliError(f"--dart-noise must be a noise std in [0, 10], got {self.dart_noise}")

    def run(self) -> None:
        from teleop.devices import describe_joysticks

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
        _refuse_invisible_window("record")
        if self.calibrate:
            from teleop.calibrate import calibrate

            try:
                calibrate(self.pad_index)
            except RuntimeError as err:
                raise CliError(str(err)) from None
            return
        from iltk.files import check_output
        from teleop.session import TeleopSession

        _check_file_name("--out", self.out, "demos.hdf5")
        check_output(self.out, append=True, what="--out")
        session = TeleopSession(
            self.task,
            self.out,
            self.make_device(),
            self.options(),
            dart_noise=self.dart_noise,
            init_spread=self.init_spread,
            auto_save_after=self.auto_save_after,
            keep_partial=self.keep_partial,
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

    def __post_init__(self):
        try:
            teleop_options.check_render_size(self.render_size)
        except ValueError as err:
            raise CliError(str(err)) from None
        if self.episodes < 0:
            raise CliError(f"--episodes must be >= 0 (0: until Esc), got {self.episodes}")

    def run(self) -> None:
        from iltk.evaluate import check_video_path, policy_for_task

        if self.video:
            check_video_path(self.video)
        if self.policy is not None:
            policy, task, env_kwargs = policy_for_task(self.policy, self.task, chunk=self.chunk)
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
            _refuse_invisible_window("replay")
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
            replay_video(self.file, self.video, eps, self.render_size, progress=True)
            print(f"wrote {self.video}")
            return
        _refuse_invisible_window("replay")
        from teleop.viewer import replay_window

        replay_window(self.file, self.episode, self.window, self.render_size)


@dataclass(kw_only=True)
class Correct(SessionOptions):
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
    retrain_every: int = 0
    """Retrain in the background every N saved episodes (0: never)."""
    retrain_steps: int = 1000
    """Gradient steps per background retraining."""
    init_spread: float | None = None
    """iltk tasks: spread of the start layouts (default: the one the policy was trained on)."""

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.beta <= 1.0:
            raise CliError(f"--beta must be a probability in [0, 1], got {self.beta}")
        if self.retrain_every < 0 or self.retrain_steps < 1:
            raise CliError("--retrain-every must be >= 0 and --retrain-steps >= 1")

    def run(self) -> None:
        from iltk.evaluate import policy_for_task
        from iltk.files import check_output
        from teleop.session import TeleopSession

        _check_file_name("--out", self.out, "demos.hdf5")
        check_output(self.out, append=True, what="--out")
        policy, task, trained = policy_for_task(self.policy, self.task)
        _refuse_invisible_window("correct")
        spread = self.init_spread
        if spread is None:
            spread = float(trained.get("init_spread", 1.0))
        session = TeleopSession(
            task,
            self.out,
            self.make_device(),
            self.options(),
            mode=self.mode,
            policy=policy,
            beta=self.beta,
            init_spread=spread,
            auto_save_after=0,
            retrain_every=self.retrain_every,
            retrain_steps=self.retrain_steps,
        )
        res = session.run()
        print(
            f"saved {_count(len(res.saved), 'episode')} to {self.out}; "
            f"{_count(res.interventions, 'intervention step')}"
        )


# ------------------------------------------------------------------ iltk dataset ...
