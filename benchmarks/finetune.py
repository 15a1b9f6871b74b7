"""PPO fine-tuning of BC policies: success on unseen starts against env steps.

Each row: scripted demos (episode seeds 0..n-1), BC at its defaults (``--algo``: bc is the
3x256 MLP, 20k steps; act the CPU-sized ACT of bc_suite.py), then `iltk finetune` with
its defaults for ``--steps`` env steps, evaluated every ``--eval-every`` steps on
``--eval-episodes`` unseen starts (the start included, at step 0). Reported: the start,
the best and the final success, the lowest evaluation during fine-tuning (the collapse
check: no evaluation more than 5 points below the start), and the env steps to +20
points. ``--scratch`` adds PPO from scratch on the same task and reward (the baseline that
fine-tuning must beat per env step); ``--beside dagger dart`` adds DAgger and DART from the
same start (round 0 is BC on the same demos), plotted against env steps and expert labels.

    python benchmarks/finetune.py --task iltk/Push-v0 --algo bc --demos 25 --seeds 0 1 2
    python benchmarks/finetune.py --task iltk/Push-v0 --algo act --demos 100
    python benchmarks/finetune.py --task iltk/Lift-v0 --algo bc --demos 5 --reward-type dense
    python benchmarks/finetune.py --algo bc --head gmm --residual true   # GMM: whole, a residual

Writes runs/bench/finetune_<task>_<algo>_<demos>.json and .png.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from iltk.algos.dagger import run_dagger  # noqa: E402
from iltk.algos.dart import run_dart  # noqa: E402
from iltk.algos.finetune import finetune  # noqa: E402
from iltk.algos.ppo import train_ppo  # noqa: E402
from iltk.algos.settings import (  # noqa: E402
    ChunkExecution,
    DaggerConfig,
    DartConfig,
    FinetuneSettings,
    LearnerSettings,
    PPOConfig,
    TrainConfig,
)
from iltk.algos.supervised import train  # noqa: E402
from iltk.collect import collect_demos  # noqa: E402
from iltk.data.reader import DemoFile  # noqa: E402
from iltk.envs import require_iltk_task  # noqa: E402
from iltk.policies.act import ACTConfig  # noqa: E402
from iltk.policies.configs import BCConfig  # noqa: E402
from iltk.rl.rewards import SuccessReward  # noqa: E402


def curve(out: Path) -> list[tuple[int, float]]:
    rows = csv.DictReader((out / "metrics.csv").open())
    return [(int(r["step"]), float(r["eval_success"])) for r in rows if r["kind"] == "eval"]


def summarize(points: list[tuple[int, float]]) -> dict:
    start = points[0][1]
    later = points[1:]
    reach = [s for s, v in later if v >= start + 0.2 - 1e-9]  # 0.62 + 0.2 > 0.82 in floats
    return {
        "start": start,
        "best": max(v for _, v in later),
        "final": later[-1][1],
        "lowest": min(v for _, v in later),
        "steps_to_plus_20": reach[0] if reach else None,
    }


def beside(args, seed: int, cell: Path, method: str) -> list[dict]:
    """DAgger or DART from the same start: round 0 is BC on ``--demos`` scripted demos (the
    same seeds, the same 3x256 MLP and 20k steps), then ``--rounds`` rounds of
    ``--episodes-per-round`` episodes, each labelled by the scripted expert."""
    common = dict(
        task=args.task,
        rounds=args.rounds,
        episodes_per_round=args.episodes_per_round,
        initial_demos=args.demos,
        eval_episodes=args.eval_episodes,
        seed=seed,
        out=cell / method,
        overwrite=True,
        # every round trains BC afresh as round 0 did (compounding_errors.py --cold-start)
        learner=LearnerSettings(steps_per_round=20_000, warm_start=False),
    )
    if method == "dagger":
        rows = run_dagger(DaggerConfig(**common), False)
    else:
        rows = run_dart(DartConfig(**common), False)
    # DAgger's rows count each round's steps; every step DART collects is labelled (the
    # episodes it probes the learner's error on are not counted)
    env_steps = (
        np.cumsum([r["steps"] for r in rows])
        if method == "dagger"
        else [r["expert_labels"] for r in rows]
    )
    return [
        {"env_steps": int(n), "labels": int(r["expert_labels"]), "success": r["success_rate"]}
        for n, r in zip(env_steps, rows)
    ]


def run(args, seed: int, root: Path) -> dict:
    cell = root / f"s{seed}"
    cell.mkdir(parents=True, exist_ok=True)
    data = cell / "demos.hdf5"
    collect_demos(args.task, data, args.demos, overwrite=True, progress=False)
    common = dict(progress=False, overwrite=True, seed=seed)
    extra = {}
    if args.algo == "act":
        extra = dict(
            steps=3000, batch_size=64, act=ACTConfig(d_model=64, dim_feedforward=256, chunk_size=20)
        )
    elif args.head != "deterministic":
        extra = dict(bc=BCConfig(head=args.head))
    t0 = time.perf_counter()
    train(
        TrainConfig(
            algo=args.algo, dataset=data, out=cell / "bc", eval_episodes=0, **extra, **common
        )
    )
    bc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    finetune(
        FinetuneSettings(
            policy=cell / "bc" / "last",
            out=cell / "ft",
            total_timesteps=args.steps,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            reward_type=args.reward_type,
            ppo=dataclasses.replace(
                FinetuneSettings().ppo,
                num_envs=args.num_envs,
                n_steps=2048 // args.num_envs,
                **({"lr": args.lr} if args.lr is not None else {}),
                **({"clip_range": args.clip} if args.clip is not None else {}),
            ),
            **({"log_std_init": args.log_std_init} if args.log_std_init is not None else {}),
            mode={"auto": "auto", "true": "residual", "false": "whole"}[args.residual],
            chunk=ChunkExecution(
                temporal_ensemble=True if args.ensemble else None,
                n_action_steps=args.n_action_steps,
            ),
            **common,
        )
    )
    out = {"seed": seed, "bc_s": bc_s, "finetune_s": time.perf_counter() - t0}
    out["finetune"] = curve(cell / "ft")
    out.update(summarize(out["finetune"]))
    if args.scratch:
        t0 = time.perf_counter()
        train_ppo(
            PPOConfig(
                task=args.task,
                total_timesteps=args.steps,
                out=cell / "scratch",
                eval_every=args.eval_every,
                eval_episodes=args.eval_episodes,
                **common,
            ),
            reward=SuccessReward() if args.reward_type == "sparse" else None,
        )
        out["scratch_s"] = time.perf_counter() - t0
        out["scratch"] = curve(cell / "scratch")
    # the labels fine-tuning costs: the demos' steps, none after
    out["demo_steps"] = demo_steps(data)
    for method in args.beside:
        t0 = time.perf_counter()
        out[method] = beside(args, seed, cell, method)
        out[f"{method}_s"] = time.perf_counter() - t0
    return out


def demo_steps(path: Path) -> int:
    with DemoFile(path, validate="none") as f:
        return sum(f.num_samples(d) for d in f.demos)


def plot(rows: list[dict], title: str, path: Path) -> None:
    """Success against env steps (left; log scale when DAgger or DART are beside) and
    against expert labels (right, when they are)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in ("dagger", "dart") if m in rows[0]]
    fig, axes = plt.subplots(1, 2 if methods else 1, figsize=(11 if methods else 6.5, 3.8))
    axes = np.atleast_1d(axes)
    colors = {"dagger": "tab:orange", "dart": "tab:green"}
    for i, r in enumerate(rows):
        xs, ys = zip(*r["finetune"])
        demo = r.get("demo_steps", 0) if methods else 0  # on a log axis: count the demos too
        axes[0].plot(
            [x + demo for x in xs],
            [100 * y for y in ys],
            color="tab:blue",
            marker="o" if methods else None,
            label="PPO fine-tuning" if not i else None,
        )
        if "scratch" in r:
            xs, ys = zip(*r["scratch"])
            axes[0].plot(
                [x + 1 for x in xs] if methods else xs,
                [100 * y for y in ys],
                color="tab:gray",
                label="PPO from scratch" if not i else None,
            )
        for m in methods:
            pts = r[m]
            label = m.upper() if m == "dart" else "DAgger"
            axes[0].plot(
                [p["env_steps"] for p in pts],
                [100 * p["success"] for p in pts],
                color=colors[m],
                marker="s",
                label=label if not i else None,
            )
            axes[1].plot(
                [p["labels"] for p in pts],
                [100 * p["success"] for p in pts],
                color=colors[m],
                marker="s",
                label=label if not i else None,
            )
        if methods:
            final = [100 * y for _, y in r["finetune"]]
            axes[1].plot(
                [r["demo_steps"]] * len(final),
                final,
                color="tab:blue",
                marker="o",
                ls="none",
                label="PPO fine-tuning (every evaluation)" if not i else None,
            )
    axes[0].set(xlabel="environment steps" + (" (demos included)" if methods else ""))
    if methods:
        axes[0].set_xscale("log")
        axes[1].set(xlabel="expert labels (demonstration and labelled steps)")
    else:
        axes[0].axvline(0, color="k", lw=0.8)
    for ax in axes:
        ax.set(ylabel="success on unseen starts (%)", ylim=(-3, 103))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="iltk/Push-v0")
    parser.add_argument("--algo", default="bc", choices=["bc", "bc-rnn", "act"])
    parser.add_argument("--demos", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--eval-every", type=int, default=50_000)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--reward-type", default="sparse", choices=["sparse", "dense"])
    parser.add_argument("--scratch", action="store_true", help="also PPO from scratch")
    parser.add_argument(
        "--beside",
        nargs="*",
        default=[],
        choices=["dagger", "dart"],
        help="also DAgger / DART from the same start (success against env steps and labels)",
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="fine-tuning's actor lr (default: iltk's)"
    )
    parser.add_argument(
        "--clip", type=float, default=None, help="fine-tuning's clip (default: iltk's)"
    )
    parser.add_argument(
        "--log-std-init",
        type=float,
        default=None,
        help="fine-tuning's initial exploration log std (default: iltk's)",
    )
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--n-action-steps",
        type=int,
        default=None,
        help="act: execute N actions of each chunk, then predict again (1: a fresh chunk "
        "every step); default: as ACT's config says",
    )
    how.add_argument(
        "--ensemble",
        action="store_true",
        help="act: temporal ensembling (m = 0.01) under the residual",
    )
    parser.add_argument(
        "--num-envs",
        type=int,
        default=1,
        choices=[1, 2, 4, 8],
        help="fine-tuning's envs, 2048 / N steps each per rollout (the same 2048-step "
        "rollouts; a chunked base predicts for all envs in one batch)",
    )
    parser.add_argument(
        "--head",
        default="deterministic",
        choices=["deterministic", "gaussian", "gmm"],
        help="bc: the action head of the MLP (default: iltk's, deterministic)",
    )
    parser.add_argument(
        "--residual",
        default="auto",
        choices=["auto", "true", "false"],
        help="fine-tune through a residual on the frozen policy (auto: iltk's choice, a "
        "residual for bc-rnn and act, the MLP itself for bc)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="DAgger / DART rounds")
    parser.add_argument("--episodes-per-round", type=int, default=10)
    parser.add_argument("--tag", default="", help="suffix of the run folder, JSON and PNG")
    args = parser.parse_args()
    if (args.n_action_steps is not None or args.ensemble) and args.algo != "act":
        parser.error("--n-action-steps and --ensemble are for --algo act")
    if args.head != "deterministic" and args.algo != "bc":
        parser.error("--head is for --algo bc (bc-rnn's head is a GMM, act's deterministic)")
    if args.residual == "false" and args.algo != "bc":
        parser.error(
            f"--residual false: {args.algo} policies are fine-tuned through a residual only"
        )
    try:  # before any demo is collected
        require_iltk_task(args.task, "the demos come from an iltk task's expert")
    except ValueError as err:
        parser.error(str(err))
    algo = args.algo + ("" if args.head == "deterministic" else f"-{args.head}")
    algo += "" if args.residual == "auto" else f"-residual-{args.residual}"
    stem = f"finetune_{args.task.split('/')[-1]}_{algo}_{args.demos}_{args.reward_type}"
    stem += f"_{args.tag}" if args.tag else ""
    root = Path("runs/bench") / stem
    rows = []
    for seed in args.seeds:
        r = run(args, seed, root)
        rows.append(r)
        to20 = r["steps_to_plus_20"]
        print(
            f"seed {seed}: start {r['start']:.0%}, best {r['best']:.0%}, final {r['final']:.0%},"
            f" lowest {r['lowest']:.0%}, +20 points at {to20 if to20 is not None else '-'} steps"
            f" (BC {r['bc_s']:.0f}s, fine-tuning {r['finetune_s']:.0f}s)",
            flush=True,
        )
    for key in ("start", "best", "final", "lowest"):
        v = [r[key] for r in rows]
        print(f"{key:7} {100 * np.mean(v):5.1f}% ± {100 * np.std(v):4.1f}")
    out = Path("runs/bench")
    (out / f"{stem}.json").write_text(json.dumps({"args": vars(args), "runs": rows}, indent=2))
    plot(
        rows,
        f"{args.task}: {algo} on {args.demos} demos, {args.reward_type}",
        out / f"{stem}.png",
    )
    print(f"wrote {out / stem}.json and .png")


if __name__ == "__main__":
    main()
