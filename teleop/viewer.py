"""The viewer: exact replay of recorded episodes, and policies acting live.

Replay sets the simulator to each recorded state (``set_state(states[t])``) and renders
it, so what is shown is exactly what was recorded, whatever the code that made the file.
Keys: Space play/pause, Right/Left step (while paused), +/- speed, N/P next/previous
episode, Home restart, Esc quit. Watching a policy runs the one control loop in real time;
R resets the episode. The headless parts (``EpisodePlayer``, ``replay_video``) live in
``iltk.replay``: ``iltk replay FILE --video`` works where pygame is not installed.
"""

from __future__ import annotations

import time

import numpy as np
import pygame

from iltk.replay import EpisodePlayer
from teleop.window import TeleopWindow

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)


def replay_window(
    path,
    episode: int | None = None,
    window_size=(640, 640),
    render_size=(320, 240),
    max_ticks: int = 0,
    event_hook=None,
    banners: list | None = None,
) -> int:
    """The interactive replay viewer (``max_ticks`` > 0 stops after that many frames, and
    ``banners`` collects the message shown over each frame: tests).

    With ``episode`` given, playing stops at that episode's end (N / P still move on);
    without, it plays every episode in turn. Returns the index of the episode shown last.
    """
    player = EpisodePlayer(path, render_size, display=True)
    player.load(episode or 0)
    single = episode is not None  # one episode asked for: stop at its end (N/P still move)
    window = TeleopWindow(window_size, title=f"iltk replay: {player.path.name}")
    t, speed_i, playing, ticks = 0, SPEEDS.index(1.0), True, 0
    notice: tuple[str, float] | None = None  # a brief message over the scene, until a time
    shown = banners if banners is not None else []
    try:
        while True:
            if event_hook is not None:
                event_hook(ticks)
            for ev in window.events():
                if ev.type == pygame.QUIT or (
                    ev.type == pygame.KEYDOWN and ev.key == pygame.K_ESCAPE
                ):
                    return player.k
                if ev.type != pygame.KEYDOWN:
                    continue
                if ev.key == pygame.K_SPACE:
                    playing = not playing
                elif ev.key == pygame.K_RIGHT:
                    t, playing = min(t + 1, len(player) - 1), False
                elif ev.key == pygame.K_LEFT:
                    t, playing = max(t - 1, 0), False
                elif ev.key in (pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS):
                    speed_i = min(speed_i + 1, len(SPEEDS) - 1)
                elif ev.key in (pygame.K_MINUS, pygame.K_KP_MINUS):
                    speed_i = max(speed_i - 1, 0)
                elif ev.key in (pygame.K_n, pygame.K_PAGEDOWN, pygame.K_p, pygame.K_PAGEUP):
                    step = 1 if ev.key in (pygame.K_n, pygame.K_PAGEDOWN) else -1
                    n = len(player.file.demos)
                    if 0 <= player.k + step < n:
                        player.load(player.k + step)
                        t = 0
                    else:  # at an end: say so, and keep the frame (it used to restart)
                        which = "last" if step > 0 else "first"
                        notice = (
                            f"this is the {which} episode ({player.k + 1} of {n})",
                            time.monotonic() + 1.5,
                        )
                elif ev.key == pygame.K_HOME:
                    t = 0
            window.show(
                player.frame(t),
                player.hud(t, SPEEDS[speed_i], playing),
                banner=notice[0] if notice and time.monotonic() < notice[1] else None,
                footer="Space play/pause  Left/Right step  +/- speed  N/P episode  Esc quit",
            )
            shown.append(window.last_banner)
            ticks += 1
            if max_ticks and ticks >= max_ticks:
                return player.k
            if playing:
                if t < len(player) - 1:
                    t += 1
                elif not single and player.k < len(player.file.demos) - 1:
                    player.load(player.k + 1)
                    t = 0
                else:
                    playing = False
            time.sleep(1.0 / (player.fps * SPEEDS[speed_i]))
    finally:
        window.close()
        player.close()


def watch_policy(
    policy,
    task: str,
    *,
    episodes: int = 0,
    seed: int = 100_000,
    env_kwargs=None,
    window_size=(640, 640),
    render_size=(320, 240),
    event_hook=None,
) -> list:
    """A policy acting live in a window through the control loop; R resets, Esc quits."""
    from iltk.controllers import PolicyController
    from iltk.envs import make_vector_env
    from iltk.policies import PolicyRunner
    from iltk.rollout import RatePacer, run_episodes

    kwargs = dict(env_kwargs or {})
    if task.startswith("iltk/"):
        kwargs.update(render_width=render_size[0], render_height=render_size[1])
    envs = make_vector_env(task, 1, asynchronous=False, render_mode="rgb_array", **kwargs)
    env = envs.envs[0]
    fps = float(env.metadata.get("render_fps", 20))
    window = TeleopWindow(window_size, title=f"iltk policy: {task}")
    ticks = [0]
    successes = []

    def after_step(ev):
        if event_hook is not None:
            event_hook(ticks[0])
        ticks[0] += 1
        command = None
        for e in window.events():
            if e.type == pygame.QUIT or (e.type == pygame.KEYDOWN and e.key == pygame.K_ESCAPE):
                command = "quit"
            elif e.type == pygame.KEYDOWN and e.key == pygame.K_r:
                command = command or "reset"
        success = bool(np.asarray(ev.info.get("success", [False]))[0])
        base = env.unwrapped
        window.show(
            base.render_frame(*render_size, display=True)
            if hasattr(base, "render_frame")
            else env.render(),
            [
                f"{task}   policy acting   episode {ev.episodes_done}",
                f"step {int(ev.episode_steps[0])}   success {'YES' if success else 'no'}   "
                f"successes so far {sum(successes)}/{len(successes)}",
            ],
            footer="R reset   Esc quit",
        )
        return {0: command} if command else None

    try:
        return run_episodes(
            envs,
            PolicyController(PolicyRunner(policy, 1)),
            episodes,
            seed=seed,
            after_step=after_step,
            pacer=RatePacer(fps),
            record_states=False,
            on_episode=lambda ep: successes.append(ep.success),
        )
    except KeyboardInterrupt:
        return []
    finally:
        window.close()
        envs.close()
