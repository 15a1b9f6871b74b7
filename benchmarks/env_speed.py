"""Env steps/s of every iltk task against a bare ``mujoco.mj_step`` loop, and render fps.

The bare loop runs the same model with the same number of physics substeps per control
step and writes random controls, so the ratio bare/env is the cost of the gymnasium
wrapper (observation, reward terms, the post-step ``mj_forward`` that keeps observations a
pure function of the state, TimeLimit and checker wrappers). Aim: ratio <= 1.3.

The control loop's own cost is measured too: ``Rollout.step`` against bare
``gymnasium.vector`` stepping with the same random actions, iltk/Push-v0 with 8 envs
(aim: under 10%).

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


def action_us(task_id: str, steps: int) -> float:
    """Microseconds per call of the task's action mapping (IK for the arm), alone."""
    env = make_env(task_id)
    env.reset(seed=0)
    base = env.unwrapped
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps,) + env.action_space.shape).astype(np.float32)
    for k in range(20):  # the states they start from: a few real steps in
        env.step(actions[k])
    t0 = time.perf_counter()
    for k in range(steps):
        base._apply_action(actions[k])
    return (time.perf_counter() - t0) / steps * 1e6


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


class RandomController:
    """The same pre-drawn random actions the bare vector loop steps with."""

    def __init__(self, actions: np.ndarray):
        self.actions, self.t = actions, 0

    def reset(self, env_ids):
        pass

    def act(self, obs, info, envs):
        from iltk.rollout import ControlOutput

        a = self.actions[self.t % len(self.actions)]
        self.t += 1
        return ControlOutput(executed=a, label=a)


def loop_overhead(task_id: str, num_envs: int, steps: int, repeats: int) -> dict:
    """Vector steps/s of bare ``gymnasium.vector`` stepping (reset on episode end, same
    random actions) against the control loop (``Rollout.step``), recording episodes and not.

    Both share one vector env made by ``make_vector_env`` (subprocesses), so the ratio is
    the loop's own cost: its controller call, episode bookkeeping, resets and recording.
    """
    from iltk.envs import make_vector_env
    from iltk.rollout import Rollout

    envs = make_vector_env(task_id, num_envs)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, num_envs) + envs.single_action_space.shape)
    actions = actions.astype(np.float32)

    def bare() -> float:
        envs.reset(seed=0)
        t0 = time.perf_counter()
        for k in range(steps):
            _, _, terminated, truncated, _ = envs.step(actions[k])
            done = terminated | truncated
            if done.any():
                envs.reset(options={"reset_mask": done})
        return steps / (time.perf_counter() - t0)

    def loop(record: bool) -> float:
        rollout = Rollout(envs, RandomController(actions), record=record, record_states=False)
        rollout.step()  # the first reset is not part of the rate
        t0 = time.perf_counter()
        for _ in range(steps):
            rollout.step()
        return steps / (time.perf_counter() - t0)

    best = {"bare": 0.0, "loop": 0.0, "loop_recording": 0.0}
    for _ in range(repeats):  # interleaved, best of each
        best["bare"] = max(best["bare"], bare())
        best["loop"] = max(best["loop"], loop(False))
        best["loop_recording"] = max(best["loop_recording"], loop(True))
    envs.close()
    return {
        "task": task_id,
        "num_envs": num_envs,
        "bare_vector_steps_per_s": best["bare"],
        "loop_steps_per_s": best["loop"],
        "loop_recording_steps_per_s": best["loop_recording"],
        "loop_overhead": best["bare"] / best["loop"] - 1.0,
        "loop_recording_overhead": best["bare"] / best["loop_recording"] - 1.0,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3000, help="control steps per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (best kept)")
    parser.add_argument("--frames", type=int, default=100, help="frames per render measurement")
    parser.add_argument("--tasks", nargs="+", default=list(TASK_IDS))
    parser.add_argument("--no-loop", action="store_true", help="skip the control-loop row")
    parser.add_argument("--out", default="runs/bench/env_speed.json")
    args = parser.parse_args()
    unknown = [t for t in args.tasks if t not in TASK_IDS]
    if unknown:
        parser.error(
            f"not iltk MuJoCo tasks: {', '.join(unknown)} (choose from {', '.join(TASK_IDS)})"
        )
    rows = []
    for task in args.tasks:
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
                "physics_us": 1e6 / bare,
                "action_us": min(action_us(task, args.steps // 3) for _ in range(3)),
                "render_fps_84x84": render_fps(task, 84, 84, args.frames),
                "render_fps_320x240": render_fps(task, 320, 240, args.frames),
            }
        )
    header = (
        f"{'task':<26}{'substeps':>9}{'bare/s':>9}{'env/s':>9}{'ratio':>7}{'physics us':>11}"
        f"{'action us':>10}{'fps 84':>8}{'fps 320x240':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['task']:<26}{r['substeps']:>9}{r['bare_steps_per_s']:>9.0f}{r['env_steps_per_s']:>9.0f}"
            f"{r['overhead_ratio']:>7.2f}{r['physics_us']:>11.0f}{r['action_us']:>10.0f}"
            f"{r['render_fps_84x84']:>8.0f}{r['render_fps_320x240']:>12.0f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.no_loop:
        out.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=2))
        print(f"wrote {out}")
        return
    loop = loop_overhead("iltk/Push-v0", 8, args.steps // 3, args.repeats)
    print(
        f"\ncontrol loop on {loop['task']} x{loop['num_envs']} envs (vector steps/s): bare "
        f"gymnasium.vector {loop['bare_vector_steps_per_s']:.0f}, Rollout.step "
        f"{loop['loop_steps_per_s']:.0f} (overhead {loop['loop_overhead']:+.1%}), recording "
        f"episodes {loop['loop_recording_steps_per_s']:.0f} "
        f"({loop['loop_recording_overhead']:+.1%}); aim: under 10%"
    )
    out.write_text(json.dumps({"steps": args.steps, "rows": rows, "loop": loop}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
