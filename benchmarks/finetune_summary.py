"""Gather finetune.py's results into one table and one figure per row of the issue.

finetune.py writes one JSON per invocation; rows measured as one process per seed (one
per core) end up in several files. This script groups every run by what it measured
(task, policy kind, demos, reward, and an ACT's chunk execution), one seed per line,
and prints per group: success at each evaluation (per seed and the mean), the gain over
the start, the lowest evaluation against the start (the collapse check: no evaluation
more than 5 points below it), the env steps to +20 points, and, where ``--scratch`` ran,
the env steps PPO from scratch needed for the success fine-tuning ended at.

    python benchmarks/finetune_summary.py                       # every runs/bench/finetune_*.json
    python benchmarks/finetune_summary.py runs/bench/finetune_Push-v0_act_100_*.json

Writes runs/bench/finetune_summary.json and .png (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

LEVELS = (0.5, 0.8, 0.9, 0.95)  # success levels at which fine-tuning and scratch are compared


def group_key(args: dict) -> tuple:
    if args.get("algo") == "act":
        if args.get("ensemble"):
            execution = "ensembled"
        elif args.get("n_action_steps") is not None:
            execution = f"n={args['n_action_steps']}"
        else:
            execution = "config"
    else:
        execution = ""
    algo = args["algo"]
    if args.get("head", "deterministic") != "deterministic":
        algo += f" {args['head']}"
    if args.get("residual", "auto") != "auto":
        execution = f"residual {args['residual']}"
    return (args["task"], algo, int(args["demos"]), args["reward_type"], execution)


def label(key: tuple) -> str:
    task, algo, demos, reward, execution = key
    text = f"{task.split('/')[-1]} {algo}, {demos} demos, {reward}"
    return text + (f" ({execution})" if execution else "")


def load(paths: list[Path]) -> dict[tuple, dict[int, dict]]:
    """Group -> seed -> run. A seed measured in several files keeps the newest file's run."""
    groups: dict[tuple, dict[int, dict]] = {}
    for path in sorted(paths, key=lambda p: p.stat().st_mtime):
        try:
            data = json.loads(path.read_text())
            key = group_key(data["args"])
            runs = data["runs"]
            for r in runs:
                r["finetune"] = [(int(s), float(v)) for s, v in r["finetune"]]
                if len(r["finetune"]) < 2:
                    raise ValueError("fewer than two evaluations (the start and one after)")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SystemExit(
                f"{path}: not a finetune.py result ({type(err).__name__}: {err});"
                " pass the JSON files benchmarks/finetune.py wrote"
            ) from None
        for r in runs:
            r["file"] = str(path)
            groups.setdefault(key, {})[int(r["seed"])] = r
    return groups


def first_at(points: list[tuple[int, float]], target: float) -> int | None:
    return next((s for s, v in points if v >= target - 1e-9), None)


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """The mean over seeds at each evaluation index (the seeds evaluate at the same steps)."""
    n = min(len(c) for c in curves)
    return [(curves[0][i][0], float(np.mean([c[i][1] for c in curves]))) for i in range(n)]


def summarize(key: tuple, seeds: dict[int, dict]) -> dict:
    runs = [seeds[s] for s in sorted(seeds)]
    steps = {tuple(s for s, _ in r["finetune"]) for r in runs}
    if len(steps) > 1:  # a mean over seeds needs the same evaluation steps
        raise SystemExit(
            f"{label(key)}: the seeds were evaluated at different env steps"
            f" ({', '.join(sorted({r['file'] for r in runs}))}); pass runs made with the same"
            " --steps and --eval-every"
        )
    mean = mean_curve([r["finetune"] for r in runs])
    out = {
        "row": label(key),
        "seeds": sorted(seeds),
        "steps": [s for s, _ in mean],
        "per_seed": {r["seed"]: [v for _, v in r["finetune"]] for r in runs},
        "mean": [v for _, v in mean],
        "start": mean[0][1],
        "final": mean[-1][1],
        "gain": mean[-1][1] - mean[0][1],
        "mean_plus_20_at": first_at(mean[1:], mean[0][1] + 0.2),
        # the collapse check, per seed: the lowest evaluation after the start minus the start
        "worst_drop": min(min(v for _, v in r["finetune"][1:]) - r["finetune"][0][1] for r in runs),
        "plus_20_at": {
            r["seed"]: first_at(r["finetune"][1:], r["finetune"][0][1] + 0.2) for r in runs
        },
        "finetune_s": {r["seed"]: round(r.get("finetune_s", float("nan"))) for r in runs},
    }
    scratch = [r["scratch"] for r in runs if "scratch" in r]
    if scratch:
        sc = mean_curve([[(int(s), float(v)) for s, v in c] for c in scratch])
        out["scratch_mean"] = [v for _, v in sc]
        out["scratch_steps"] = [s for s, _ in sc]
        # env steps of each (mean curves) to the same success; 0 for fine-tuning: its start
        out["steps_to"] = {
            f"{level:.0%}": {"finetune": first_at(mean, level), "scratch": first_at(sc, level)}
            for level in LEVELS
        }
    return out


def table(s: dict) -> str:
    head = ["seed"] + [f"{round(x / 1000)}k" if x else "0 (start)" for x in s["steps"]]
    lines = ["| " + " | ".join([s["row"]] + head[1:]) + " |", "|" + "---|" * len(head)]
    for seed, vals in s["per_seed"].items():
        lines.append("| " + " | ".join([f"seed {seed}"] + [f"{100 * v:.0f}%" for v in vals]) + " |")
    lines.append("| " + " | ".join(["mean"] + [f"{100 * v:.0f}%" for v in s["mean"]]) + " |")
    if "scratch_mean" in s:
        # PPO from scratch evaluates from its first --eval-every on (no start to evaluate)
        at = dict(zip(s["scratch_steps"], s["scratch_mean"]))
        cells = [f"{100 * at[x]:.0f}%" if x in at else "-" for x in s["steps"]]
        lines.append("| " + " | ".join(["PPO from scratch (mean)", *cells]) + " |")
    return "\n".join(lines)


def verdict(s: dict) -> str:
    to20 = ", ".join(f"{k}: {v if v is not None else '-'}" for k, v in s["plus_20_at"].items())
    text = (
        f"start {100 * s['start']:.0f}% -> {100 * s['final']:.0f}% ({100 * s['gain']:+.0f} points);"
        f" worst evaluation against its own start {100 * s['worst_drop']:+.0f} points"
        f" ({'collapse' if s['worst_drop'] < -0.05 - 1e-9 else 'no collapse'});"
        f" steps to +20 per seed: {to20}"
    )
    if "scratch_mean" in s:
        both = [
            f"{level}: {ft if ft is not None else '-'} against {sc if sc is not None else '-'}"
            for level, d in s["steps_to"].items()
            for ft, sc in [(d["finetune"], d["scratch"])]
        ]
        text += "; env steps to a mean success of (fine-tuning against PPO from scratch) "
        text += ", ".join(both)
    return text


def plot(summaries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(summaries)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, s in zip(axes.flat, summaries):
        xs = np.array(s["steps"]) / 1000
        for i, vals in enumerate(s["per_seed"].values()):
            ax.plot(
                xs[: len(vals)],
                100 * np.array(vals[: len(xs)]),
                color="tab:blue",
                lw=0.8,
                alpha=0.5,
                label="seeds" if not i else None,
            )
        ax.plot(xs, 100 * np.array(s["mean"]), color="tab:blue", lw=2.2, marker="o", label="mean")
        if "scratch_mean" in s:
            ax.plot(
                np.array(s["scratch_steps"]) / 1000,
                100 * np.array(s["scratch_mean"]),
                color="tab:gray",
                lw=1.8,
                label="PPO from scratch (mean)",
            )
        if s["start"] + 0.2 <= 1:
            ax.axhline(
                100 * (s["start"] + 0.2), color="tab:green", ls="--", lw=0.9, label="start + 20"
            )
        ax.axhline(100 * (s["start"] - 0.05), color="tab:red", ls=":", lw=0.9, label="start - 5")
        ax.axvline(0, color="k", lw=0.8)
        ax.set(
            title=s["row"],
            xlabel="env steps (thousands)",
            ylabel="success on unseen starts (%)",
            ylim=(-3, 103),
        )
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="*", type=Path, help="finetune.py JSONs (default: all)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench/finetune_summary"),
        help="stem of the JSON and PNG written",
    )
    args = parser.parse_args()
    files = args.files or sorted(
        p for p in Path("runs/bench").glob("finetune_*.json") if p.stem != "finetune_summary"
    )
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        parser.error(f"no such file (or not a file): {', '.join(missing)}")
    if not files:
        parser.error("no runs/bench/finetune_*.json yet: run benchmarks/finetune.py first")
    groups = load(files)
    summaries = [summarize(k, groups[k]) for k in sorted(groups)]
    for s in summaries:
        print(table(s))
        print(verdict(s), end="\n\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summaries, indent=2))
    plot(summaries, args.out.with_suffix(".png"))
    print(f"wrote {args.out}.json and .png", file=sys.stderr)


if __name__ == "__main__":
    main()
