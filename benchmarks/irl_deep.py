"""Deep MaxEnt IRL on the MuJoCo tasks: the IRL policy against BC on the same demos, and a
fresh PPO on the learned reward against PPO on the task's true dense reward.

For each task and number of demonstrations (scripted expert, episode seeds 0..n-1):

- BC: `iltk train --algo bc` at its defaults (the 3x256 MLP, 20k steps);
- IRL: `iltk irl` for ``--irl-steps`` env steps (its defaults, plus the flags below); its
  policy (``OUT/policy``, the last one, never chosen by the env's reward) is evaluated;
- PPO on the learned reward (``iltk ppo --reward OUT/reward``) and PPO on the true dense
  reward, ``--ppo-steps`` each, from scratch: can the learned reward teach a fresh learner,
  and how close does it come to the reward it was never shown?

Every policy is evaluated on the same ``--eval-episodes`` unseen starts (seeds 100000..).

    python benchmarks/irl_deep.py --tasks iltk/Reach-v0 --demos 1 4 16 --seeds 0

Writes OUT.json and OUT.png (``--out``, default runs/bench/irl_deep: success against demos
per method).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from iltk.algos.irl.run import train_irl  # noqa: E402
from iltk.algos.ppo import train_ppo  # noqa: E402
from iltk.algos.settings import (  # noqa: E402
    IRLConfig,
    PPOConfig,
    RewardPlayerSettings,
    TrainConfig,
)
from iltk.algos.supervised import train  # noqa: E402
from iltk.collect import collect_demos  # noqa: E402
from iltk.evaluate import evaluate_policy  # noqa: E402
from iltk.policies import load_policy  # noqa: E402

METHODS = ("bc", "irl", "ppo_learned", "ppo_true")


def evaluate(path: Path, task: str, episodes: int) -> float:
    res = evaluate_policy(load_policy(path), task, episodes, seed=100_000)
    return res.success_rate


def run_cell(task: str, demos: int, seed: int, args, root: Path) -> dict:
    cell = root / f"{task.split('/')[-1]}_{demos}demos_s{seed}"
    cell.mkdir(parents=True, exist_ok=True)
    data = cell / "demos.hdf5"
    collect_demos(task, data, demos, overwrite=True, progress=False)
    out: dict = {"task": task, "demos": demos, "seed": seed, "seconds": {}, "success": {}}
    common = dict(progress=False, overwrite=True, seed=seed)
    if "bc" in args.methods:
        t0 = time.perf_counter()
        train(TrainConfig(algo="bc", dataset=data, out=cell / "bc", eval_episodes=0, **common))
        out["seconds"]["bc"] = time.perf_counter() - t0
        out["success"]["bc"] = evaluate(cell / "bc" / "last", task, args.eval_episodes)
    if {"irl", "ppo_learned"} & set(args.methods):
        t0 = time.perf_counter()
        train_irl(
            IRLConfig(
                task=task,
                dataset=data,
                out=cell / "irl",
                total_timesteps=args.irl_steps,
                eval_every=0,
                eval_episodes=args.eval_episodes,
                reward=RewardPlayerSettings(
                    updates=args.reward_updates, lr=args.reward_lr, starts=args.starts
                ),
                **common,
            )
        )
        out["seconds"]["irl"] = time.perf_counter() - t0
        out["success"]["irl"] = evaluate(cell / "irl" / "policy", task, args.eval_episodes)
    for method, reward in (("ppo_learned", cell / "irl" / "reward"), ("ppo_true", None)):
        if method not in args.methods:
            continue
        t0 = time.perf_counter()
        train_ppo(
            PPOConfig(
                task=task,
                total_timesteps=args.ppo_steps,
                out=cell / method,
                reward=reward,
                eval_every=0,
                eval_episodes=0,
                **common,
            )
        )
        out["seconds"][method] = time.perf_counter() - t0
        out["success"][method] = evaluate(cell / method / "last", task, args.eval_episodes)
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in METHODS:
            pts = {}
            for r in rows:
                if r["task"] == task and method in r["success"]:
                    pts.setdefault(r["demos"], []).append(r["success"][method])
            if pts:
                xs = sorted(pts)
                ax.errorbar(
                    xs,
                    [100 * np.mean(pts[x]) for x in xs],
                    yerr=[100 * np.std(pts[x]) for x in xs],
                    marker="o",
                    capsize=3,
                    label=method,
                )
        ax.set(
            xscale="log", xlabel="demonstrations", ylabel="success (%)", title=task, ylim=(-3, 103)
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["iltk/Reach-v0"])
    parser.add_argument("--demos", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--irl-steps", type=int, default=300_000)
    parser.add_argument("--ppo-steps", type=int, default=200_000)
    parser.add_argument("--reward-updates", type=int, default=50)
    parser.add_argument("--reward-lr", type=float, default=1e-3)
    parser.add_argument(
        "--starts",
        default="demos",
        choices=["demos", "fresh"],
        help="where IRL's training episodes start (iltk irl --reward.starts)",
    )
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--out", default="runs/bench/irl_deep")
    args = parser.parse_args()
    root = Path(args.out)
    rows = []
    for task in args.tasks:
        for demos in args.demos:
            for seed in args.seeds:
                row = run_cell(task, demos, seed, args, root)
                rows.append(row)
                cells = "  ".join(f"{m} {100 * v:3.0f}%" for m, v in row["success"].items())
                secs = ", ".join(f"{m} {v:.0f}s" for m, v in row["seconds"].items())
                print(f"{task} {demos:3d} demos seed {seed}: {cells}   ({secs})", flush=True)
    print(f"\nsuccess on {args.eval_episodes} unseen starts, mean over seeds {args.seeds}")
    print(f"{'task':22} {'demos':>5} " + " ".join(f"{m:>12}" for m in METHODS))
    for task in args.tasks:
        for demos in args.demos:
            cell = [r for r in rows if r["task"] == task and r["demos"] == demos]
            vals = []
            for m in METHODS:
                v = [r["success"][m] for r in cell if m in r["success"]]
                vals.append(f"{100 * np.mean(v):11.0f}%" if v else f"{'-':>12}")
            print(f"{task:22} {demos:5d} " + " ".join(vals))
    stem = Path(args.out)  # runs/bench/irl_deep -> runs/bench/irl_deep.json and .png
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    plot(rows, stem.with_suffix(".png"))
    print(f"wrote {stem}.json and .png")


if __name__ == "__main__":
    main()
