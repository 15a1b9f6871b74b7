"""The BC suite: every task x algo x number of demos x seed, evaluated on 100 episodes.

Algos: ``bc`` (MLP, deterministic MSE head), ``bc-gmm`` (MLP, GMM head), ``bc-rnn``,
``act``, ``diffusion`` (Diffusion Policy: DDPM training, DDIM sampling), ``flow`` (the
same network trained by flow matching) and ``regression`` (the same network trained with
MSE: the lecture's flow-against-regression table, with ``--expert-side start`` for
deterministic PointMaze demos). Scripted demonstrations are collected once per task and seed (the largest count),
and the first N are used for each N. Outputs a markdown table, JSON, and a PNG of success
against demos per task. Aims: some algo reaches 90% on every task with 100 demos; on
``iltk/PointMaze-v0`` (bimodal demos) GMM and ACT reach 90% while the deterministic MLP
pays for mode averaging (the gap is reported).

The full grid is heavy on a 2-core CPU (the recurrent and transformer policies dominate);
``--tasks``, ``--algos``, ``--demos``, ``--seeds`` and the per-algo ``--steps-*`` select a
part of it, and each finished cell is appended to the JSON, so runs can be resumed; runs in
parallel (one per core, each with its own ``--out``) are reported together with ``--merge``.

    python benchmarks/bc_suite.py                                     # the whole grid
    python benchmarks/bc_suite.py --tasks iltk/PointMaze-v0 --seeds 0 # one task
    python benchmarks/bc_suite.py --out runs/bench/bc_suite --merge runs/a runs/b

The default bc-rnn (2x400) and act (d_model 256) sizes are robomimic's and ACT's; on a 2-core
CPU ``--rnn-hidden 128 --act-dim 64`` keep a cell to a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from iltk.algos.supervised import TrainConfig, train  # noqa: E402
from iltk.collect import collect_demos  # noqa: E402
from iltk.data import DemoFile  # noqa: E402
from iltk.data.tools import copy_demos  # noqa: E402
from iltk.envs import TASK_IDS  # noqa: E402
from iltk.evaluate import evaluate_policy  # noqa: E402
from iltk.policies import load_policy  # noqa: E402
from iltk.policies.act import ACTConfig  # noqa: E402
from iltk.policies.bc import BCConfig, BCRNNConfig  # noqa: E402
from iltk.policies.configs import DiffusionConfig  # noqa: E402

ALGOS = ("bc", "bc-gmm", "bc-rnn", "act", "diffusion", "flow", "regression")


def train_config(algo: str, args, dataset: Path, out: Path, seed: int) -> TrainConfig:
    common = dict(
        dataset=dataset,
        out=out,
        eval_episodes=0,
        progress=False,
        seed=seed,
        device=args.device,
        overwrite=True,
    )
    if algo == "bc":
        return TrainConfig(algo="bc", steps=args.steps_bc, **common)
    if algo == "bc-gmm":
        return TrainConfig(algo="bc", steps=args.steps_bc, bc=BCConfig(head="gmm"), **common)
    if algo == "bc-rnn":
        return TrainConfig(
            algo="bc-rnn",
            steps=args.steps_rnn,
            batch_size=args.batch_rnn,
            bc_rnn=BCRNNConfig(rnn_hidden=args.rnn_hidden),
            **common,
        )
    if algo in ("diffusion", "flow", "regression"):
        return TrainConfig(
            algo="diffusion",
            steps=args.steps_diffusion,
            batch_size=args.batch_diffusion,
            lr=args.lr_diffusion,
            diffusion=DiffusionConfig(
                objective=algo,
                down_dims=args.diffusion_dims,
                n_action_steps=args.diffusion_action_steps,
                rtc_steps=args.rtc_steps,
                prefix_training=args.prefix_training,
            ),
            **common,
        )
    return TrainConfig(
        algo="act",
        steps=args.steps_act,
        batch_size=args.batch_act,
        act=ACTConfig(d_model=args.act_dim, dim_feedforward=4 * args.act_dim),
        **common,
    )


def env_kwargs(task: str, args) -> dict:
    """The demos' env keywords: PointMaze's expert side (the same env acts at evaluation)."""
    return {"expert_side": args.expert_side} if task == "iltk/PointMaze-v0" else {}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASK_IDS))
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--demos", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--steps-bc", type=int, default=20000)
    parser.add_argument("--steps-rnn", type=int, default=3000)
    parser.add_argument("--steps-act", type=int, default=3000)
    parser.add_argument("--batch-rnn", type=int, default=64)
    parser.add_argument("--batch-act", type=int, default=64)
    parser.add_argument("--rnn-hidden", type=int, default=400, help="robomimic's default is 400")
    parser.add_argument("--act-dim", type=int, default=256)
    parser.add_argument("--steps-diffusion", type=int, default=3000)
    parser.add_argument("--batch-diffusion", type=int, default=64)
    parser.add_argument(
        "--diffusion-action-steps",
        type=int,
        default=8,
        help="diffusion/flow: actions executed per chunk (receding horizon)",
    )
    parser.add_argument(
        "--lr-diffusion", type=float, default=None, help="peak lr (default: the policy's)"
    )
    parser.add_argument(
        "--diffusion-dims", type=int, nargs="+", default=[32, 64, 128], help="U-Net widths"
    )
    parser.add_argument(
        "--rtc-steps", type=int, default=0, help="diffusion/flow: real-time chunking (0: off)"
    )
    parser.add_argument(
        "--prefix-training", type=int, default=0, help="diffusion/flow: train to continue prefixes"
    )
    parser.add_argument(
        "--expert-side",
        choices=("random", "start"),
        default="random",
        help="PointMaze's demos: a side drawn per episode (bimodal) or the start's (one mode)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/bench/bc_suite")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=[],
        help="only report: merge the bc_suite.json of these run folders (parallel runs) into --out",
    )
    args = parser.parse_args()
    if args.lr_diffusion is not None and not (0 < args.lr_diffusion < 1):
        parser.error(f"--lr-diffusion must be in (0, 1), got {args.lr_diffusion}")
    if any(a in ("diffusion", "flow", "regression") for a in args.algos):
        try:  # a bad diffusion setting is refused before any demo is collected
            DiffusionConfig(
                down_dims=args.diffusion_dims,
                n_action_steps=args.diffusion_action_steps,
                rtc_steps=args.rtc_steps,
                prefix_training=args.prefix_training,
            )
        except ValueError as e:
            parser.error(str(e))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "bc_suite.json"
    if args.merge:
        merged = {}
        missing = [str(f) for f in args.merge if not (f / "bc_suite.json").is_file()]
        if missing:
            parser.error(
                f"no bc_suite.json in {', '.join(missing)} (pass run folders of this script)"
            )
        for folder in args.merge:
            for c in json.loads((folder / "bc_suite.json").read_text())["cells"]:
                merged[(c["task"], c["algo"], c["demos"], c["seed"])] = c
        cells = list(merged.values())
        results_path.write_text(json.dumps({"cells": cells}, indent=2))
        report(cells, out)
        return
    cells = json.loads(results_path.read_text())["cells"] if results_path.exists() else []
    done = {(c["task"], c["algo"], c["demos"], c["seed"]) for c in cells}
    t_start = time.perf_counter()
    for task in args.tasks:
        base, _, version = task.split("/")[-1].lower().partition("-")
        name = base if version in ("v0", "") else f"{base}-{version}"  # v0 keeps its folders
        for seed in args.seeds:
            pool = out / name / f"seed{seed}" / "pool.hdf5"
            if not pool.exists():
                collect_demos(
                    task,
                    pool,
                    max(args.demos),
                    seed=seed * 100_000,
                    num_envs=2,
                    progress=False,
                    env_kwargs=env_kwargs(task, args),
                )
            with DemoFile(pool) as f:
                for n in args.demos:
                    subset = pool.with_name(f"demos_{n}.hdf5")
                    if not subset.exists():
                        copy_demos([(f, d) for d in f.demos[:n]], subset)
                    for algo in args.algos:
                        if (task, algo, n, seed) in done:
                            continue
                        run = pool.parent / f"{algo}_{n}"
                        t0 = time.perf_counter()
                        res = train(train_config(algo, args, subset, run, seed))
                        ev = evaluate_policy(
                            load_policy(run / "last"),
                            task,
                            args.eval_episodes,
                            seed=1_000_000,
                            num_envs=2,
                            env_kwargs=env_kwargs(task, args),
                        )
                        cell = {
                            "task": task,
                            "algo": algo,
                            "demos": n,
                            "seed": seed,
                            **env_kwargs(task, args),
                            "success_rate": ev.success_rate,
                            "ci95": ev.ci95,
                            "train_s": res["train_time_s"],
                            "wall_s": time.perf_counter() - t0,
                        }
                        cells.append(cell)
                        results_path.write_text(json.dumps({"cells": cells}, indent=2))
                        print(
                            f"{task:<18} {algo:<7} demos {n:>3} seed {seed}: success {ev.success_rate:.0%} "
                            f"({cell['wall_s']:.0f}s)",
                            flush=True,
                        )
    report(cells, out)
    print(f"done in {time.perf_counter() - t_start:.0f}s")


def report(cells: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(
        {c["task"] for c in cells}, key=lambda t: TASK_IDS.index(t) if t in TASK_IDS else 99
    )
    demos = sorted({c["demos"] for c in cells})
    algos = [a for a in ALGOS if any(c["algo"] == a for c in cells)]

    def stat(task, algo, n):
        vals = [
            c["success_rate"]
            for c in cells
            if (c["task"], c["algo"], c["demos"]) == (task, algo, n)
        ]
        return (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else None

    lines = [
        "| task | algo | " + " | ".join(f"{n} demos" for n in demos) + " |",
        "|---|---|" + "---|" * len(demos),
    ]
    for task in tasks:
        for algo in algos:
            row = []
            for n in demos:
                s = stat(task, algo, n)
                row.append("-" if s is None else f"{s[0]:.0%} ± {s[1]:.0%} (n={s[2]})")
            lines.append(f"| `{task}` | {algo} | " + " | ".join(row) + " |")
    gap = {}
    for task in tasks:
        best = {a: stat(task, a, max(demos)) for a in algos}
        gap[task] = {a: (v[0] if v else None) for a, v in best.items()}
    lines += ["", f"Success with {max(demos)} demos, per algo: " + json.dumps(gap)]
    (out / "bc_suite.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for algo in algos:
            pts = [(n, stat(task, algo, n)) for n in demos if stat(task, algo, n)]
            if pts:
                ax.errorbar(
                    [p[0] for p in pts],
                    [p[1][0] for p in pts],
                    yerr=[p[1][1] for p in pts],
                    marker="o",
                    capsize=3,
                    label=algo,
                )
        ax.set(title=task, xlabel="demos", ylabel="success rate", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bc_suite.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
