"""Every iltk task's scripted expert over many seeded episodes: success, length, steps/s,
clean and with Gaussian noise on every executed action (DART's regime: the expert must
recover from where the noise takes it, as DAgger and HG-DAgger need it to).

Aim (the Panda tasks): >= 95% success over 100 seeds, clean.

    python benchmarks/experts.py [--tasks ...] [--episodes 100] [--noise 0 0.15 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from iltk.envs import TASK_IDS, make_env, make_expert  # noqa: E402


def run(task: str, episodes: int, noise: float, seed: int) -> dict:
    env = make_env(task)
    expert = make_expert(env)
    rng = np.random.default_rng(seed)
    successes, lengths, steps = 0, [], 0
    t0 = time.perf_counter()
    for k in range(episodes):
        env.reset(seed=seed + k)
        done, n = False, 0
        while not done:
            action = expert()
            if noise:
                action = np.clip(action + rng.normal(0, noise, action.shape), -1, 1)
            _, _, terminated, truncated, info = env.step(action)
            done, n = terminated or truncated, n + 1
        successes += bool(info["success"])
        lengths.append(n)
        steps += n
    env.close()
    return {
        "task": task,
        "noise": noise,
        "episodes": episodes,
        "success_rate": successes / episodes,
        "mean_length": float(np.mean(lengths)),
        "steps_per_s": steps / (time.perf_counter() - t0),
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASK_IDS))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0])
    parser.add_argument("--seed", type=int, default=1000, help="episode k: seed SEED + k")
    parser.add_argument("--out", default="runs/bench/experts.json")
    args = parser.parse_args()
    if args.episodes < 1 or any(not 0 <= n <= 2 for n in args.noise):
        parser.error("need --episodes >= 1 and every --noise in [0, 2]")
    unknown = [t for t in args.tasks if t not in TASK_IDS]
    if unknown:
        parser.error(
            f"not iltk MuJoCo tasks: {', '.join(unknown)} (choose from {', '.join(TASK_IDS)})"
        )
    rows = []
    print(f"{'task':<26}{'noise':>6}{'success':>9}{'length':>8}{'steps/s':>9}")
    for task in args.tasks:
        for noise in args.noise:
            r = run(task, args.episodes, noise, args.seed)
            rows.append(r)
            print(
                f"{task:<26}{noise:>6.2f}{r['success_rate']:>9.0%}{r['mean_length']:>8.1f}"
                f"{r['steps_per_s']:>9.0f}",
                flush=True,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
