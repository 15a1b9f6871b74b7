"""Env steps/s of every iltk task against a bare ``mujoco.mj_step`` loop, and render fps.

The bare loop runs the same model with the same number of physics substeps per control
step and writes random controls, so the ratio bare/env is the cost of the gymnasium
wrapper (observation, reward terms, the post-step ``mj_forward`` that keeps observations a
pure function of the state, TimeLimit and checker wrappers). Aim: ratio <= 1.3.

    python benchmarks/env_speed.py [--steps 3000] [--out runs/bench/env_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from iltk.envs import TASK_IDS, make_env  # noqa: E402


def bare_steps_per_s(model, n_substeps: int, steps: int) -> float:
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    rng = np.random.default_rng(0)
    controls = rng.uniform(-1, 1, (steps, model.nu))
    lo, hi = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    t0 = time.perf_counter()
    for k in range(steps):
        data.ctrl[:] = lo + (controls[k] + 1) / 2 * (hi - lo)
        mujoco.mj_step(model, data, nstep=n_substeps)
    return steps / (time.perf_counter() - t0)


def env_steps_per_s(task_id: str, steps: int) -> float:
    env = make_env(task_id)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps,) + env.action_space.shape).astype(np.float32)
    t0 = time.perf_counter()
    for k in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[k])
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - t0)


def render_fps(task_id: str, width: int, height: int, frames: int) -> float:
    env = make_env(task_id)
    env.reset(seed=0)
    base = env.unwrapped
    base.render_frame(width, height)  # context creation is not part of the rate
    t0 = time.perf_counter()
    for _ in range(frames):
        base.render_frame(width, height)
    fps = frames / (time.perf_counter() - t0)
    env.close()
    return fps


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3000, help="control steps per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (best kept)")
    parser.add_argument("--frames", type=int, default=100, help="frames per render measurement")
    parser.add_argument("--out", default="runs/bench/env_speed.json")
    args = parser.parse_args()
    rows = []
    for task in TASK_IDS:
        env = make_env(task)
        model, n_sub = env.unwrapped.model, env.unwrapped.n_substeps
        env.close()
        # interleaved repeats, best of each: the machine's noise only ever slows a run down
        bare, wrapped = 0.0, 0.0
        for _ in range(args.repeats):
            bare = max(bare, bare_steps_per_s(model, n_sub, args.steps))
            wrapped = max(wrapped, env_steps_per_s(task, args.steps))
        rows.append(
            {
                "task": task,
                "substeps": n_sub,
                "bare_steps_per_s": bare,
                "env_steps_per_s": wrapped,
                "overhead_ratio": bare / wrapped,
                "render_fps_84x84": render_fps(task, 84, 84, args.frames),
                "render_fps_320x240": render_fps(task, 320, 240, args.frames),
            }
        )
    header = f"{'task':<20}{'substeps':>9}{'bare/s':>10}{'env/s':>10}{'ratio':>7}{'fps 84':>9}{'fps 320x240':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['task']:<20}{r['substeps']:>9}{r['bare_steps_per_s']:>10.0f}{r['env_steps_per_s']:>10.0f}"
            f"{r['overhead_ratio']:>7.2f}{r['render_fps_84x84']:>9.0f}{r['render_fps_320x240']:>12.0f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
