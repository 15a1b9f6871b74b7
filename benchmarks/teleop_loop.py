"""Teleop loop timing: missed deadlines, input-to-applied latency, highest sustained rate.

Runs the real recording session (window under SDL's dummy driver, real MuJoCo rendering,
the crash-safe writer) with a keyboard device fed by a thread that posts key events at
random times, like a person would. For every posted input, latency = time until the
control step that applied it had finished stepping the sim. Aims: under 1% missed
deadlines at 20 Hz, latency at most one control period (50 ms). When a render would
overrun the next deadline the session keeps the last frame on screen ("display fps"
below the control rate), so the control rate holds while the display degrades.

The main view is rendered at the size the window shows it, the second (top) camera in the
panel beside it, both through the display renderers (a 1024-texel shadow map). With
DISPLAY set (a desktop, or Xvfb) the window is a real X window; without, SDL's dummy driver.

    python benchmarks/teleop_loop.py [--seconds 10] [--task iltk/Lift-v0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

if not os.environ.get("DISPLAY"):  # no X server: an offscreen window (a real one with DISPLAY)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pygame  # noqa: E402

from teleop.devices import KeyboardDevice  # noqa: E402
from teleop.options import SessionOptions
from teleop.session import TeleopSession  # noqa: E402


def run(
    task: str,
    hz: float,
    seconds: float,
    render: tuple[int, int] | None,
    window: tuple[int, int],
    tmp: Path,
) -> dict:
    posts: list[float] = []
    stop = threading.Event()

    def person():
        rng = random.Random(0)
        keys = [pygame.K_RIGHT, pygame.K_LEFT, pygame.K_UP, pygame.K_DOWN]
        down = None
        while not stop.is_set():
            time.sleep(rng.uniform(0.05, 0.25))
            try:
                if down is not None:
                    pygame.event.post(
                        pygame.event.Event(pygame.KEYUP, key=down, mod=0, unicode="", scancode=0)
                    )
                down = rng.choice(keys)
                t = time.perf_counter()
                pygame.event.post(
                    pygame.event.Event(pygame.KEYDOWN, key=down, mod=0, unicode="", scancode=0)
                )
                posts.append(t)
            except pygame.error:  # the session closed its window
                return

    n_steps = int(hz * seconds)
    state = {"started": False}

    def hook(tick):
        if tick == 1 and not state["started"]:
            state["started"] = True
            threading.Thread(target=person, daemon=True).start()
        if tick >= n_steps:
            stop.set()
            pygame.event.post(
                pygame.event.Event(
                    pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0, unicode="", scancode=0
                )
            )

    session = TeleopSession(
        task,
        tmp / f"t_{hz}_{window[0]}_{render[0] if render else 0}.hdf5",
        KeyboardDevice(),
        auto_save_after=0,
        event_hook=hook,
        keep_partial=True,
        options=SessionOptions(control_freq=hz, window=window, render_size=render),
    )
    polls, step_polls, applied = [], [], []
    orig_poll, orig_after = session.poll, session.after_step

    def poll():
        polls.append(time.perf_counter())
        return orig_poll()

    def after_step(ev):
        # the sim has stepped with the action of the last poll (polls while an episode
        # waits for its first input lead to no step)
        step_polls.append(polls[-1])
        applied.append(time.perf_counter())
        return orig_after(ev)

    session.poll, session.after_step = poll, after_step
    t0 = time.perf_counter()
    session.run()
    wall = time.perf_counter() - t0
    stop.set()
    polls_arr, applied_arr = np.array(step_polls), np.array(applied)
    latencies = []
    for tp in posts:
        k = np.searchsorted(polls_arr, tp)  # first poll after the input arrived
        if k < len(applied_arr):
            latencies.append(applied_arr[k] - tp)
    lat = np.array(latencies) * 1e3
    pacer = session.pacer
    return {
        "task": task,
        "hz": hz,
        "render": list(session.scene_size()),
        "window": list(window),
        "steps": pacer.steps,
        "wall_s": wall,
        "achieved_hz": (len(applied) - 1) / (applied[-1] - applied[0]) if len(applied) > 2 else 0.0,
        "missed_fraction": pacer.missed_fraction,
        "latency_ms_mean": float(lat.mean()) if lat.size else None,
        "latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else None,
        "latency_ms_max": float(lat.max()) if lat.size else None,
        "inputs": int(lat.size),
        "frames_skipped": session.frames_skipped,
        "display_fps": (pacer.steps - session.frames_skipped) / wall,
        "period_ms": 1e3 / hz,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="iltk/Lift-v0")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", type=float, nargs="+", default=[20, 30, 40, 60, 80, 120])
    parser.add_argument("--out", default="runs/bench/teleop_loop.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # the main view rendered at the size the window shows it (plus the second view)
        for window in ((640, 640), (1000, 700)):
            rows.append(run(args.task, 20.0, args.seconds, None, window, tmp))
        sweep = [
            run(args.task, hz, max(3.0, args.seconds / 2), None, (640, 640), tmp)
            for hz in args.rates
        ]
    print(
        f"{'Hz':>5} {'window':>9} {'render':>9} {'achieved':>9} {'missed':>8} {'lat mean':>9} {'lat p95':>8} {'lat max':>8} {'period':>7} {'display fps':>12} {'skipped':>8}"
    )
    for r in rows + sweep:
        print(
            f"{r['hz']:>5.0f} {r['window'][0]:>4}x{r['window'][1]:<4} "
            f"{r['render'][0]:>4}x{r['render'][1]:<4} {r['achieved_hz']:>9.1f} "
            f"{100 * r['missed_fraction']:>7.1f}% {r['latency_ms_mean'] or 0:>8.1f}ms {r['latency_ms_p95'] or 0:>7.1f}ms "
            f"{r['latency_ms_max'] or 0:>7.1f}ms {r['period_ms']:>6.1f}ms {r['display_fps']:>12.1f}"
            f" {r['frames_skipped']:>4}/{r['steps']:<4}"
        )
    sustained = [r["hz"] for r in sweep if r["missed_fraction"] < 0.01]
    best = max(sustained) if sustained else None
    print(f"highest rate with < 1% missed deadlines (640x640 window): {best} Hz")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"at_20hz": rows, "sweep": sweep, "highest_sustained_hz": best}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
