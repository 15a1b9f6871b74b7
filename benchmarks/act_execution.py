"""How ACT's chunks are executed: success of one trained ACT under each execution mode.

Each cell: scripted demos (episode seeds 0..n-1), the CPU-sized ACT of bc_suite.py and
finetune.py (d_model 64, feed-forward 256, chunk 20, CVAE, 3k steps, batch 64), trained
once; then the same weights evaluated on ``--episodes`` unseen starts (seeds 100000..)
under every mode:

- ``ensemble``: a chunk predicted every step, the step's action the average of every
  prediction made for it with weights exp(-m*i) (ACT's temporal ensembling, m = 0.01);
- ``n=1``: a chunk predicted every step, its first action executed (no ensembling);
- ``n=5``, ``n=10``, ``n=20``: that many actions of each chunk executed open-loop.

    python benchmarks/act_execution.py --tasks iltk/Push-v0 --demos 100 --seeds 0 1 2

Writes runs/bench/act_execution[_TAG].json and .png (success per mode, per task).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from iltk.algos.settings import TrainConfig  # noqa: E402
from iltk.algos.supervised import train  # noqa: E402
from iltk.collect import collect_demos  # noqa: E402
from iltk.envs import require_iltk_task  # noqa: E402
from iltk.evaluate import evaluate_policy  # noqa: E402
from iltk.policies import load_checkpoint, set_chunk_execution  # noqa: E402
from iltk.policies.act import ACTConfig  # noqa: E402

MODES = {
    "ensemble": dict(temporal_ensemble=True, ensemble_m=0.01),
    "n=1": dict(n_action_steps=1),
    "n=5": dict(n_action_steps=5),
    "n=10": dict(n_action_steps=10),
    "n=20": dict(n_action_steps=20),
}


def run_cell(task: str, demos: int, seed: int, episodes: int, root: Path) -> dict:
    cell = root / f"{task.split('/')[-1]}_{demos}_s{seed}"
    data = cell / "demos.hdf5"
    t0 = time.perf_counter()
    collect_demos(task, data, demos, overwrite=True, progress=False)
    train(
        TrainConfig(
            algo="act",
            dataset=data,
            out=cell / "act",
            steps=3000,
            batch_size=64,
            act=ACTConfig(d_model=64, dim_feedforward=256, chunk_size=20),
            eval_episodes=0,
            progress=False,
            overwrite=True,
            seed=seed,
        )
    )
    out = {"task": task, "demos": demos, "seed": seed, "train_s": time.perf_counter() - t0}
    for name, how in MODES.items():
        policy, extra = load_checkpoint(cell / "act" / "last")
        set_chunk_execution(policy, **how)
        t0 = time.perf_counter()
        res = evaluate_policy(policy, task, episodes, env_kwargs=extra.get("env_kwargs"))
        out[name] = res.success_rate
        out[f"{name}_s"] = time.perf_counter() - t0
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["task"], r["demos"]) for r in rows})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(groups) + 2), 3.8))
    width = 0.8 / len(MODES)
    for j, name in enumerate(MODES):
        means, stds = [], []
        for g in groups:
            v = [100 * r[name] for r in rows if (r["task"], r["demos"]) == g]
            means.append(np.mean(v))
            stds.append(np.std(v))
        x = np.arange(len(groups)) + (j - (len(MODES) - 1) / 2) * width
        ax.bar(x, means, width, yerr=stds, label=name, capsize=2)
    ax.set_xticks(
        np.arange(len(groups)), [f"{t.split('/')[-1]}\n{d} demos" for t, d in groups], fontsize=8
    )
    ax.set(ylabel="success on unseen starts (%)", ylim=(0, 120), yticks=range(0, 101, 20))
    ax.set_title("one ACT per cell, executed five ways (mean ± std over seeds)", fontsize=10)
    ax.legend(fontsize=8, ncol=len(MODES), loc="upper center")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["iltk/Push-v0"])
    parser.add_argument("--demos", type=int, nargs="+", default=[100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--tag", default="", help="suffix of the run folder, JSON and PNG")
    args = parser.parse_args()
    if args.episodes < 1 or min(args.demos) < 1:
        parser.error("--episodes and --demos must be at least 1")
    for task in args.tasks:  # before any training
        try:
            require_iltk_task(task, "the demos come from an iltk task's expert")
        except ValueError as err:
            parser.error(str(err))
    stem = "act_execution" + (f"_{args.tag}" if args.tag else "")
    out = Path("runs/bench")
    root = out / stem
    rows = []
    print("task | demos | seed | " + " | ".join(MODES))
    for task in args.tasks:
        for demos in args.demos:
            for seed in args.seeds:
                r = run_cell(task, demos, seed, args.episodes, root)
                rows.append(r)
                cells = " | ".join(f"{100 * r[m]:.0f}%" for m in MODES)
                print(f"{task} | {demos} | {seed} | {cells}", flush=True)
    if len(args.seeds) > 1:
        print("\nmean ± std over seeds")
        for task in args.tasks:
            for demos in args.demos:
                sel = [r for r in rows if (r["task"], r["demos"]) == (task, demos)]
                cells = " | ".join(
                    f"{100 * np.mean([r[m] for r in sel]):.0f}% ± "
                    f"{100 * np.std([r[m] for r in sel]):.0f}"
                    for m in MODES
                )
                print(f"{task} | {demos} | {cells}")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    plot(rows, out / f"{stem}.png")
    print(f"wrote {out / stem}.json and .png")


if __name__ == "__main__":
    main()
