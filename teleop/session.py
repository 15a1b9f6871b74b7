"""Teleop sessions: a person at a device drives, or corrects, a task in a live window.

Recording and interactive correction are one session class on the one control loop
(``iltk.rollout.run_episodes``) with real-time pacing; they differ only in the controller,
composed from the person (``teleop.human.HumanController``) and the combinators of
``iltk.controllers`` that the automated algorithms use too:

- ``record``: the person's command is executed and is the label (source "human"); with
  DART noise (``DartNoise``) the executed action is the command plus N(0, sigma^2), the
  label stays clean.
- ``hg-dagger``: ``TakeoverGate(person, policy, ButtonTrigger())``: the policy drives;
  while the takeover button is held the person does, and those steps are flagged
  ``intervention`` (Kelly et al. 2019).
- ``dagger``: ``BetaMixture(person, policy, beta)``: the policy drives (or, with
  probability beta, the person) and the person's command is the label at every step
  (Ross et al. 2011).

The window's status and badge are in ``teleop.hud``; retraining in the background and the
policy swap between episodes in ``teleop.retrain``.

Saving uses the crash-safe writer: Ctrl-C, closing the window or a crash never loses a
saved episode. A pad unplugged mid-episode pauses the session until it is plugged back.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iltk.controllers import BetaMixture, ButtonTrigger, DartNoise, TakeoverGate
from iltk.data import DemoWriter, make_env_args
from iltk.envs import make_vector_env
from iltk.rollout import Episode, RatePacer, StepEvent, run_episodes
from teleop import hud
from teleop.devices import Command, bindings_for, check_profile_for_task, session_keys
from teleop.human import HumanController
from teleop.options import SessionOptions
from teleop.retrain import BackgroundRetrainer, SwappablePolicy
from teleop.window import BORDER, TeleopWindow, require_display

MODES = ("record", "hg-dagger", "dagger")
INSET_SIZE = (224, 168)  # the second camera view in the panel
# What the display gives up, in order, when frames cost more than the step leaves: the
# shadows (most of a software frame), then render size (each size has its own renderer,
# made when the session opens); back up when there is time again.
DISPLAY_LEVELS = ((1.0, True), (1.0, False), (0.7, False), (0.5, False))
DISPLAY_RETRY_S = 5.0  # seconds at a degraded level before the one above is tried again


def _terminate_as_interrupt():
    """Route SIGTERM to KeyboardInterrupt (main thread only); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


SOURCE = {"record": "human", "hg-dagger": "hg-dagger", "dagger": "dagger"}


@dataclass
class SessionResult:
    saved: list[str] = field(default_factory=list)
    discarded: int = 0
    steps: int = 0
    missed_deadlines: int = 0
    achieved_hz: float = 0.0
    interventions: int = 0


class TeleopSession:
    """One recording or correction session.

    Args:
        task: task id.
        out: episode file to write (appended to when it exists).
        device: an input device (``teleop.devices.make_device``, or
            ``SessionOptions.make_device``).
        options: the person's options (rate, episodes, operator, seed, window and render
            sizes, time-outs, episode limit): the same ``SessionOptions`` `iltk record`
            and `iltk correct` read from their flags (default: its defaults).
        mode: record, hg-dagger or dagger.
        policy: the policy to correct (hg-dagger, dagger).
        beta: dagger only: probability that the person's command is executed.
        dart_noise: record only: std of the Gaussian noise added to executed actions.
        init_spread: iltk tasks: spread of the start layouts (1: full ranges, 0: one layout).
        auto_save_after: save automatically after this many consecutive successful steps
            (0: only on the save button).
        keep_partial: on quit, keep the episode in progress (flagged partial).
        event_hook: called with the poll count before every poll (tests post events here).
        on_saved: called with each saved episode's name.
        retrain_every: correction modes: retrain the policy on the file every N saved
            episodes, in a background process (the window never freezes), and swap the new
            policy in at the next episode start (0: never).
        retrain_steps: gradient steps of each background retraining.
        run_dir: where retraining runs write their checkpoints.
        start_on_input: each episode starts at the person's first input (a direction, the
            gripper or the takeover button); until then the window shows the scene live and
            no step runs, so nothing is recorded behind the person's back.
    """

    def __init__(
        self,
        task: str,
        out: str | Path,
        device,
        options: SessionOptions | None = None,
        *,
        mode: str = "record",
        policy=None,
        beta: float = 0.0,
        dart_noise: float = 0.0,
        init_spread: float = 1.0,
        auto_save_after: int = 10,
        keep_partial: bool = False,
        event_hook: Callable[[int], None] | None = None,
        on_saved: Callable[[str, Episode], None] | None = None,
        retrain_every: int = 0,
        retrain_steps: int = 1000,
        run_dir: str | Path | None = None,
        start_on_input: bool = True,
    ):
        options = options if options is not None else SessionOptions()
        control_freq, episodes, operator = options.control_freq, options.episodes, options.operator
        window_size, render_size, seed = options.window, options.render_size, options.seed
        keep_timeouts, max_steps = options.keep_timeouts, options.max_steps
        require_display()  # before any work: without a screen nobody can drive
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode != "record" and policy is None:
            raise ValueError(f"--mode {mode} needs a policy to correct")
        if dart_noise and mode != "record":
            raise ValueError("DART noise applies to recording only")
        if init_spread != 1.0 and not task.startswith("iltk/"):
            raise ValueError("init_spread applies to iltk tasks only")
        self.task, self.out, self.device, self.mode = task, Path(out), device, mode
        device.connect()
        self.beta, self.dart_noise, self.control_freq = (
            float(beta),
            float(dart_noise),
            float(control_freq),
        )
        self.auto_save_after, self.episodes, self.operator = auto_save_after, episodes, operator
        self.seed, self.keep_partial = seed, keep_partial
        self.event_hook, self.on_saved = event_hook, on_saved
        # what re-simulation needs is stored with the data; render settings are not
        sim_kwargs = (
            {"control_freq": control_freq, "terminate_on_success": False}
            if task.startswith("iltk/")
            else {}
        )
        if init_spread != 1.0:
            sim_kwargs["init_spread"] = float(init_spread)
        kwargs = {"render_mode": "rgb_array", **sim_kwargs}
        if max_steps is not None:
            kwargs["max_episode_steps"] = int(max_steps)
        if task.startswith("iltk/"):
            width, height = render_size or (320, 240)
            kwargs.update(render_width=width, render_height=height)
        self.envs = make_vector_env(task, 1, asynchronous=False, **kwargs)
        self.env = self.envs.envs[0]
        if hasattr(device, "profile"):  # a pad or a SpaceMouse: before anything is written
            try:
                check_profile_for_task(device.profile, int(np.prod(self.env.action_space.shape)))
            except ValueError:
                self.envs.close()
                raise
        self.max_steps = self.env.spec.max_episode_steps if self.env.spec else None
        self.render_size = tuple(render_size) if render_size else None
        base = self.env.unwrapped
        if getattr(base, "display_cameras", ()):  # the task's window views
            self.views = list(base.display_cameras)
        elif hasattr(base, "render_frame"):  # the task's camera first, then its others
            names = [base.model.camera(i).name for i in range(base.model.ncam)]
            first = base.camera if base.camera in names else names[0] if names else None
            self.views = [first] + [n for n in names if n != first] if first else []
        else:
            self.views = []
        self.views = self.views[:2]
        self.view = 0
        self.keys = bindings_for(
            getattr(device, "bindings", getattr(device, "kind", "")),
            mode,
            int(np.prod(self.envs.single_action_space.shape)),
            len(self.views),
        )
        self.start_on_input, self.waiting = bool(start_on_input), False
        self.quit_while_waiting = False
        self.flash_text: tuple[str, tuple[int, int, int], float] | None = None
        self.action_dim = int(np.prod(self.envs.single_action_space.shape))
        self.policy_controller = SwappablePolicy(policy) if policy is not None else None
        base = self.env.unwrapped
        env_args = make_env_args(task, sim_kwargs, control_freq)
        env_args["max_episode_steps"] = self.max_steps  # the limit the episodes were recorded under
        self.writer = DemoWriter(
            self.out,
            env_args,
            model_file=base.model_xml() if hasattr(base, "model_xml") else "",
            operator=operator,
        )
        self.window = TeleopWindow(window_size, title=f"iltk {mode}: {task}")
        self.pacer = RatePacer(control_freq)
        self.pending: set[str] = set()
        self.polls = 0
        self.result = SessionResult()
        self.success_streak = 0
        self.human_in_control = mode == "record"
        self.step_times: deque[float] = deque(maxlen=40)
        self.last_cmd = Command()
        self.paused_s = 0.0
        self.render_s = 0.0  # running estimate of one render + draw
        self.frames_skipped = 0
        self.display_level = 0  # index into DISPLAY_LEVELS
        self.degraded_at = -float("inf")  # when the display level last changed
        self.current_step = 0  # the episode's step the panel last showed
        self.draws = 0
        self._inset: np.ndarray | None = None
        self.submitted = 0
        self.keep_timeouts = keep_timeouts
        self.retrain_every = int(retrain_every)
        if self.retrain_every and mode == "record":
            raise ValueError("--retrain-every applies to correction sessions (hg-dagger, dagger)")
        self.retrainer = BackgroundRetrainer(
            self.out,
            task,
            Path(run_dir) if run_dir else self.out.with_name(self.out.stem + "_retrain"),
            retrain_steps,
            uncorrected_weight=0.0 if mode == "hg-dagger" else 1.0,
        )
        # create the GL context and draw once now, not inside the first paced step
        self.envs.reset(seed=seed)
        self.draw()

    # ----------------------------------------------------------------- input
    def poll(self) -> Command:
        if self.event_hook is not None:
            self.event_hook(self.polls)
        self.polls += 1
        events = self.window.events()
        cmd = self.device.read(events)
        self.pending |= cmd.triggered | session_keys(events)
        if "view" in self.pending:  # swap the main and the panel's camera
            self.pending.discard("view")
            self.view = 1 - self.view if len(self.views) > 1 else 0
        self.last_cmd = cmd
        return cmd

    def flash(self, text: str, color=(255, 210, 60), seconds: float = 1.5) -> None:
        """Show ``text`` over the scene for a moment (saves, discards, time-outs)."""
        self.flash_text = (text, color, time.perf_counter() + seconds)

    def banner(self) -> tuple[str | None, tuple[int, int, int]]:
        if self.flash_text is not None and time.perf_counter() < self.flash_text[2]:
            return self.flash_text[0], self.flash_text[1]
        return None, (255, 210, 60)

    def wait_for_start(self, cmd: Command) -> Command:
        """Hold the episode's first step until the person gives input, showing the scene
        live (no step runs, nothing is recorded); quitting while waiting ends the session."""
        hint = "move" if self.mode == "record" else "move or take over"
        while not cmd.active and "quit" not in self.pending:
            self.pending -= {"save", "discard", "reset"}  # no episode yet to act on
            text, color = self.banner()
            episode = len(self.result.saved) + self.result.discarded
            self.draw(
                banner=(text, color)
                if text
                else (f"ready: {hint} to start episode {episode}", (120, 220, 255))
            )
            time.sleep(1 / 60)
            cmd = self.poll()
        self.waiting = False
        self.quit_while_waiting = not cmd.active
        self.pacer.restart()  # the wait is no missed deadline
        if cmd.active:
            self.step_times.clear()  # nor part of the control rate shown
        return cmd

    # the input protocol HumanController reads (teleop.human.PersonInput)
    def start_episode(self) -> None:
        """A new episode: it waits for the person's first input (``start_on_input``)."""
        self.waiting = self.start_on_input
        self.current_step = 0
        new_episode = getattr(self.device, "new_episode", None)
        if new_episode is not None:
            new_episode()

    def next_command(self) -> Command:
        """The person's command for this step: the device polled, the session paused while
        the device is disconnected, held at an episode's start until the first input."""
        cmd = self.poll()
        while not cmd.connected and "quit" not in self.pending:
            self.pause_until_reconnected()
            cmd = self.poll()
        if self.waiting:
            cmd = self.wait_for_start(cmd)
        return cmd

    @property
    def last_late(self) -> bool:
        """Whether the last control deadline was missed."""
        return self.pacer.last_late

    def pause_until_reconnected(self) -> None:
        t0 = time.perf_counter()
        self.draw(banner=("Controller disconnected: plug it back in (Esc quits)", (255, 210, 60)))
        time.sleep(1 / 30)
        self.paused_s += time.perf_counter() - t0
        self.pacer.restart()  # the pause is no missed deadline
        self.step_times.clear()  # nor part of the control rate shown

    # -------------------------------------------------------------- the loop
    @property
    def policy(self):
        return self.policy_controller.policy if self.policy_controller else None

    @property
    def policy_version(self) -> int:
        return self.policy_controller.version if self.policy_controller else 0

    @property
    def retrain_round(self) -> int:
        return self.retrainer.rounds

    @property
    def retrain_proc(self):
        """The background retraining process while one runs (else None)."""
        return self.retrainer.process

    def hud(
        self, step: int | None = None, success: bool = False, episode: int | None = None
    ) -> list[str]:
        step = self.current_step if step is None else step
        return hud.status_lines(
            task=self.task,
            mode=self.mode,
            episode=len(self.result.saved) + self.result.discarded if episode is None else episode,
            step=step,
            max_steps=self.max_steps,
            control_freq=self.control_freq,
            success=success,
            fine=self.last_cmd.fine,
            hz=hud.achieved_hz(self.step_times),
            missed_fraction=self.pacer.missed_fraction,
            saved=len(self.result.saved),
            out_name=self.out.name,
            frames_skipped=self.frames_skipped,
            display_level=self.display_level,
            dart_noise=self.dart_noise,
            policy_version=None if self.mode == "record" else self.policy_version,
            retraining=self.retrainer.running,
            waiting=self.waiting,
        )

    def badge(self) -> tuple[str, tuple[int, int, int]]:
        return hud.badge(self.mode, self.waiting, self.human_in_control)

    def scene_size(self) -> tuple[int, int]:
        """The main view's render size: --render-size, else what the window shows it at."""
        if self.render_size is not None:
            return self.render_size
        scene, _ = self.window.layout((3, 4))
        w = min(scene.w - 2 * BORDER, (scene.h - 2 * BORDER) * 4 // 3)
        w = int(np.clip(w * DISPLAY_LEVELS[self.display_level][0], 112, 1280)) // 4 * 4
        return w, w * 3 // 4

    def render_view(self, camera: str | None, size: tuple[int, int]) -> np.ndarray | None:
        base = self.env.unwrapped
        if camera is None or not hasattr(base, "render_frame"):
            return self.env.render()  # a foreign env: its own single view
        shadows = DISPLAY_LEVELS[self.display_level][1]
        return base.render_frame(size[0], size[1], camera=camera, display=True, shadows=shadows)

    def draw(
        self, step: int | None = None, success: bool = False, banner: tuple | None = None
    ) -> None:
        """The scene from the main camera, the other camera in the panel, the status
        (``step``: default the episode's last one, so a pause shows where it stopped)."""
        if step is None:
            step = self.current_step
        self.current_step = step
        main = self.views[self.view] if self.views else None
        other = self.views[1 - self.view] if len(self.views) > 1 else None
        text, color = banner if banner is not None else self.banner()
        self.window.show(
            self.render_view(main, self.scene_size()),
            self.hud(step, success),
            banner=text,
            banner_color=color,
            footer=self.keys,
            badge=self.badge(),
            inset=self._inset_view(other),
            inset_label=f"{other} view (V / Y swaps)" if other else "",
        )

    def _inset_view(self, camera: str | None) -> np.ndarray | None:
        """The panel's camera: every frame, or every other one while the display is
        degraded (the main view has the priority)."""
        if camera is None:
            return None
        self.draws += 1
        if self._inset is None or self.display_level == 0 or self.draws % 2 == 0:
            self._inset = self.render_view(camera, INSET_SIZE)
        return self._inset

    def _adapt_display(self) -> None:
        """Keep a frame within about half a control step: smaller renders while frames
        cost more, the full size again once they are cheap (a busy CPU degrades the
        display, never the control rate)."""
        if self.render_size is not None:
            return  # the person fixed the size
        period = 1.0 / self.control_freq
        now = time.perf_counter()
        if self.render_s > 0.55 * period and self.display_level < len(DISPLAY_LEVELS) - 1:
            self.display_level += 1
            self.render_s *= 0.6  # re-measure at the new size
            self.degraded_at = now
        elif (
            self.render_s < 0.2 * period
            and self.display_level > 0
            and now - self.degraded_at > DISPLAY_RETRY_S
        ):
            # the level above was measured too slow: try it again only now and then (the
            # load may have gone), else the display would flap between the two levels
            self.display_level -= 1
            self.render_s *= 1.6
            self.degraded_at = now

    def after_step(self, ev: StepEvent):
        if self.quit_while_waiting:
            return {0: "quit"}  # the step that carried the quit began no episode
        now = time.perf_counter()
        self.step_times.append(now)
        if self.mode != "record":  # who acted this step, for the badge
            fields = ev.control.fields
            acted = fields.get("intervention", fields.get("expert_acted"))
            self.human_in_control = bool(np.asarray(acted)[0]) if acted is not None else False
        self.result.steps += 1
        success = bool(np.asarray(ev.info.get("success", [False]))[0])
        self.success_streak = self.success_streak + 1 if success else 0
        # The control deadline has priority over the display: when the next deadline is
        # closer than a render takes, keep the last frame on screen this step.
        deadline = self.pacer.next_deadline
        if deadline is not None and deadline - now < 1.2 * self.render_s:
            self.frames_skipped += 1
            # decay the estimate so one slow frame (a first draw, a hiccup) cannot stop
            # rendering for good: the next attempt re-measures it
            self.render_s *= 0.95
        else:
            t0 = time.perf_counter()
            self.draw(int(ev.episode_steps[0]), success)
            spent = time.perf_counter() - t0
            self.render_s = spent if self.render_s == 0 else 0.8 * self.render_s + 0.2 * spent
            self._adapt_display()
        self.current_step = int(ev.episode_steps[0])
        self.poll_retrain()
        command = None
        # an episode's fate first: Enter then Esc within one step saves, then quits (quit
        # first dropped the episode the person had just asked to save)
        for name in ("save", "discard", "reset", "quit"):
            if name in self.pending:
                command = name
                break
        keep_quit = command != "quit" and "quit" in self.pending
        self.pending.clear()
        if keep_quit:
            self.pending.add("quit")  # acted on at the next poll, between episodes
        if command is None and self.auto_save_after and self.success_streak >= self.auto_save_after:
            command = "save"
        if command is None and not self.keep_timeouts and bool(np.asarray(ev.truncated)[0]):
            # nobody chose to keep it: a time-out is not a demonstration (nor a correction)
            command = "discard"
            self.flash("time limit: episode discarded", (255, 120, 90))
            print(
                "teleop: time limit reached, episode discarded (save it before the limit, "
                "or pass --keep-timeouts)"
            )
        if self.episodes and self.submitted >= self.episodes:
            command = "quit"
        if command in ("save", "discard", "reset"):
            self.success_streak = 0
        return {0: command} if command else None

    def on_episode(self, ep: Episode) -> None:
        if self.quit_while_waiting:
            return  # quit before the episode began: not an episode (not even a partial one)
        # episode boundaries are the loop's natural pause: collect garbage here, not
        # whenever the collector happens to trigger in the middle of a paced step
        gc.collect(1)
        unlabelled = (self.mode == "dagger" and not ep.fields["has_label"].any()) or (
            self.mode == "hg-dagger" and not ep.fields["intervention"].any()
        )
        if ep.outcome == "save" and unlabelled:
            # nothing the person labelled: saving it would train on no correction at all
            why = "no stick input" if self.mode == "dagger" else "no takeover"
            self.result.discarded += 1
            self.flash(f"{why}: nothing to learn, not saved", (255, 120, 90))
            print(f"teleop: episode {ep.index} not saved ({why} in {ep.length} steps)")
            return
        if ep.outcome != "save":
            self.result.discarded += 1
            what = {"discard": "discarded", "reset": "reset without saving"}[ep.outcome]
            if not ep.truncated:  # a time-out already said so
                self.flash(f"episode {what}", (255, 120, 90))
            print(f"teleop: episode {ep.index} {what} ({ep.length} steps)")
            return
        ts = ep.fields.get("timestamps")
        late = ep.fields.get("late")
        attrs = {
            "control_freq": self.control_freq,
            "achieved_hz": float((len(ts) - 1) / (ts[-1] - ts[0]))
            if ts is not None and len(ts) > 2 and ts[-1] > ts[0]
            else 0.0,
            "missed_deadlines": int(np.sum(late > 0)) if late is not None else 0,
            "max_late_ms": float(late.max() * 1e3) if late is not None and len(late) else 0.0,
            "dart_noise": self.dart_noise,
            "mode": self.mode,
        }
        if "intervention" in ep.fields:
            self.result.interventions += int(ep.fields["intervention"].sum())
        # the save runs on the writer's thread; the loop does not wait for the disk
        future = self.writer.save(ep, source=SOURCE[self.mode], attrs=attrs)
        self.submitted += 1

        def done(fut, ep=ep):
            if fut.exception() is not None:
                print(f"teleop: SAVE FAILED: {fut.exception()}")
                return
            name = fut.result()
            self.result.saved.append(name)
            self.flash(f"saved {name}", (120, 230, 120))
            flags = ", partial" if ep.partial else ""
            print(f"teleop: saved {name} ({ep.length} steps, success={ep.success}{flags})")
            if self.on_saved is not None:
                self.on_saved(name, ep)

        future.add_done_callback(done)
        if self.retrain_every and self.submitted % self.retrain_every == 0:
            self.start_retrain()

    # ------------------------------------------------------------ retraining
    def start_retrain(self) -> None:
        """Retrain on the file in a background process (warm start from the current policy)."""
        self.writer.flush()  # the child reads every saved episode
        if self.retrainer.start(self.policy, self.policy_version):
            print(f"teleop: retraining in the background -> {self.retrainer.target}")

    def poll_retrain(self, wait: bool = False) -> None:
        policy = self.retrainer.poll(wait)
        if policy is not None:  # swapped in at the next episode start
            self.policy_controller.next_policy = policy

    def controller(self):
        """The session's controller: the person, composed as the mode says (see module)."""
        if self.mode == "record":
            human = HumanController(self)
            if self.dart_noise > 0:
                return DartNoise(human, self.dart_noise, seed=self.seed)
            return human
        if self.mode == "hg-dagger":
            human = HumanController(self, report_takeover=True)
            return TakeoverGate(human, self.policy_controller, ButtonTrigger("takeover"))
        human = HumanController(self, report_label=True)
        return BetaMixture(human, self.policy_controller, self.beta, seed=self.seed)

    def _warm_display(self) -> None:
        """Make the renderers of every display size now, not mid-episode (a GL context
        takes a tenth of a second or more on a software renderer)."""
        if not self.views or self.render_size is not None:
            return
        level = self.display_level
        for self.display_level in range(len(DISPLAY_LEVELS)):
            self.render_view(self.views[0], self.scene_size())
        self.display_level = level

    def run(self) -> SessionResult:
        controller = self.controller()
        self._warm_display()
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()  # no collector pauses inside paced steps (see on_episode)
        # SIGTERM (a closed terminal, `kill`) ends the session like Ctrl-C: saves kept
        previous_term = _terminate_as_interrupt()
        try:
            run_episodes(
                self.envs,
                controller,
                0,
                seed=self.seed,
                on_episode=self.on_episode,
                after_step=self.after_step,
                pacer=self.pacer,
                keep_partial=self.keep_partial,
            )
        except KeyboardInterrupt:
            print("teleop: interrupted; saved episodes are kept")
        finally:
            if gc_was_enabled:
                gc.enable()
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
            self.close()
        self.result.missed_deadlines = self.pacer.missed
        self.result.achieved_hz = hud.achieved_hz(list(self.step_times))
        return self.result

    def close(self) -> None:
        self.retrainer.close()
        try:
            self.writer.close()
        finally:
            self.window.close()
            self.envs.close()
            self.device.close()
