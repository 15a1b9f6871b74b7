"""Compounding errors: BC against DAgger, HG-DAgger and DART, and the horizon experiment.

Part 1 (MuJoCo tasks, scripted supervisor): success against the number of expert labels.
BC is trained on growing sets of expert demonstrations; DAgger, HG-DAgger and DART start
from a few demonstrations and add rounds. Every point is evaluated on unseen seeds and
averaged over seeds. Reported (markdown table, JSON, PNG): each method's best success, the
labels it needed to match BC's best success, exactly and within ``--tolerance`` (aim: DAgger
and DART within half of BC's labels on at least one task), its success at BC's label counts
(equal-label comparison), and HG-DAgger's expert-controlled steps and intervention fraction.
The learner matters: by default every round retrains from scratch for as many steps as BC
(``--cold-start``, ``--steps-per-round`` = ``--bc-steps``), so every label count gets the same
training. Finished runs are read back from ``--out`` (resumable; seeds run in separate
processes merge there), so ``--out`` is tied to the settings it was made with.

Part 2 (tabular chain MDP, ``iltk.envs.chain``): the expected cost of BC and of DAgger
against the horizon H, with the fitted log-log slopes (theory: 2 for BC, 1 for DAgger).

    python benchmarks/compounding_errors.py [--tasks iltk/Lift-v0 iltk/Push-v0] [--seeds 0 1 2]
    python benchmarks/compounding_errors.py --quick      # a smoke run: minutes, one seed, Lift
    python benchmarks/compounding_errors.py --tasks iltk/Push-v0 --init-spread 0.05 ...
                                  # narrow starts: BC's failures are drift, not unseen layouts
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from iltk.algos.dagger import run_dagger  # noqa: E402
from iltk.algos.dart import run_dart  # noqa: E402
from iltk.algos.settings import DaggerConfig, DartConfig, LearnerSettings  # noqa: E402
from iltk.algos.supervised import TrainConfig, train  # noqa: E402
from iltk.collect import collect_demos  # noqa: E402
from iltk.data import DemoFile  # noqa: E402
from iltk.data.tools import copy_demos  # noqa: E402
from iltk.envs.chain import ChainMDP, TabularLearner  # noqa: E402
from iltk.evaluate import evaluate_policy  # noqa: E402
from iltk.policies import load_policy  # noqa: E402
from iltk.policies.bc import HEADS, BCConfig  # noqa: E402

METHODS = ("bc", "dagger", "hg-dagger", "dart")
EVAL_SEED = 1_000_000


def bc_curve(
    task, seed, demo_counts, steps, eval_eps, out: Path, bc: BCConfig, env_kwargs: dict
) -> list[dict]:
    cache = out / "bc_curve.json"
    if cache.exists():  # finished earlier (runs are resumable)
        return json.loads(cache.read_text())
    pool = out / "pool.hdf5"
    collect_demos(
        task,
        pool,
        max(demo_counts),
        seed=seed * 100_000,
        overwrite=True,
        progress=False,
        num_envs=2,
        env_kwargs=env_kwargs,
    )
    rows = []
    with DemoFile(pool) as f:
        for n in demo_counts:
            subset = out / f"bc_{n}.hdf5"
            copy_demos([(f, d) for d in f.demos[:n]], subset)
            labels = sum(f.num_samples(d) for d in f.demos[:n])
            run = out / f"bc_{n}"
            train(
                TrainConfig(
                    dataset=subset,
                    out=run,
                    steps=steps,
                    eval_episodes=0,
                    progress=False,
                    seed=seed,
                    bc=bc,
                    overwrite=True,
                )
            )
            res = evaluate_policy(
                load_policy(run / "last"),
                task,
                eval_eps,
                seed=EVAL_SEED,
                num_envs=2,
                env_kwargs=env_kwargs,
            )
            rows.append({"demos": n, "expert_labels": labels, "success_rate": res.success_rate})
            print(
                f"  bc      seed {seed} demos {n:>3}: {labels:>6} labels, success {res.success_rate:.0%}"
            )
    cache.write_text(json.dumps(rows, indent=2))
    return rows


def learner_config(args) -> BCConfig:
    """The policy every learner trains (BC and each interactive round alike)."""
    return BCConfig(hidden=list(args.hidden), head=args.head)


def env_kwargs(args) -> dict:
    """The tasks' keyword arguments (none at the default spread)."""
    return {} if args.init_spread == 1.0 else {"init_spread": args.init_spread}


def interactive_curve(method, task, seed, args, out: Path) -> list[dict]:
    learner = LearnerSettings(
        steps_per_round=args.steps_per_round,
        warm_start=not args.cold_start,
        bc=learner_config(args),
    )
    common = dict(
        task=task,
        rounds=args.rounds,
        episodes_per_round=args.episodes_per_round,
        initial_demos=args.initial_demos,
        eval_episodes=args.eval_episodes,
        init_spread=args.init_spread,
        seed=seed,
        out=out / method,
        learner=learner,
    )
    done = out / method / "rounds.json"
    if done.exists() and len(json.loads(done.read_text())) == args.rounds + 1:
        rows = json.loads(done.read_text())  # finished earlier (runs are resumable)
    elif method == "dart":
        rows = run_dart(DartConfig(**common), progress=False)
    else:
        gate = dict(takeover=args.takeover, handback=args.handback) if method == "hg-dagger" else {}
        rows = run_dagger(
            DaggerConfig(
                variant=method,
                beta_schedule=args.beta_schedule,
                beta=args.beta,
                **gate,
                **common,
            ),
            progress=False,
        )
    for r in rows:
        extra = (
            f", interventions {r['intervention_fraction']:.0%}"
            if method == "hg-dagger" and r["round"]
            else ""
        )
        print(
            f"  {method:<9} seed {seed} round {r['round']}: {r['expert_labels']:>6} labels, "
            f"success {r['success_rate']:.0%}{extra}"
        )
    return rows


def mean_curve(curves: list[list[dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = min(len(c) for c in curves)
    labels = np.array([[c[i]["expert_labels"] for i in range(n)] for c in curves], float)
    succ = np.array([[c[i]["success_rate"] for i in range(n)] for c in curves], float)
    return labels.mean(0), succ.mean(0), succ.std(0)


def labels_to_reach(labels: np.ndarray, succ: np.ndarray, target: float) -> float | None:
    hits = np.flatnonzero(succ >= target - 1e-9)
    return float(labels[hits[0]]) if hits.size else None


def part1(args, out: Path) -> dict:
    results = {}
    for task in args.tasks:
        name = task.split("/")[-1].split("-")[0].lower()
        curves: dict[str, list] = {m: [] for m in METHODS}
        for seed in args.seeds:
            seed_dir = out / name / f"seed{seed}"
            seed_dir.mkdir(parents=True, exist_ok=True)
            curves["bc"].append(
                bc_curve(
                    task,
                    seed,
                    args.bc_demos,
                    args.bc_steps,
                    args.eval_episodes,
                    seed_dir,
                    learner_config(args),
                    env_kwargs(args),
                )
            )
            for m in args.methods:
                curves[m].append(interactive_curve(m, task, seed, args, seed_dir))
        summary = {}
        bc_labels, bc_succ, _ = mean_curve(curves["bc"])
        bc_best = float(bc_succ.max())
        bc_best_labels = float(bc_labels[int(bc_succ.argmax())])
        for m in ["bc", *args.methods]:
            labels, succ, std = mean_curve(curves[m])
            reach = labels_to_reach(labels, succ, bc_best)
            near = labels_to_reach(labels, succ, bc_best - args.tolerance)
            summary[m] = {
                "labels": labels.tolist(),
                "success_mean": succ.tolist(),
                "success_std": std.tolist(),
                "best_success": float(succ.max()),
                "labels_at_best": float(labels[int(succ.argmax())]),
                "labels_to_reach_bc_best": reach,
                "fraction_of_bc_labels": (reach / bc_best_labels) if reach is not None else None,
                "labels_to_within_tolerance": near,
                "fraction_within_tolerance": (near / bc_best_labels) if near is not None else None,
                # equal-label comparison: this method's success interpolated at BC's budgets
                "success_at_bc_labels": np.interp(
                    bc_labels, labels, succ, left=np.nan, right=np.nan
                ).tolist(),
            }
            if m == "hg-dagger":
                fr = [r["intervention_fraction"] for c in curves[m] for r in c if r["round"] > 0]
                summary[m]["mean_intervention_fraction"] = float(np.mean(fr)) if fr else None
                summary[m]["expert_controlled_steps"] = float(
                    np.mean([c[-1]["expert_controlled_steps"] for c in curves[m]])
                )
            if m == "dagger":
                summary[m]["expert_controlled_steps"] = float(labels[-1])  # every step is labelled
        results[task] = {
            "bc_labels": bc_labels.tolist(),
            "bc_best_success": bc_best,
            "bc_best_labels": bc_best_labels,
            "methods": summary,
            "raw": curves,
        }
    return results


def part2(args) -> dict:
    """BC and DAgger on the chain MDP: mean cost over many rollouts, per horizon."""
    horizons = args.horizons
    out = {"eps": args.chain_eps, "horizons": horizons, "bc": [], "dagger": []}
    for h in horizons:
        mdp = ChainMDP(h)
        rng = np.random.default_rng(h)
        learner = TabularLearner(mdp.n_states, args.chain_eps)
        expert_policy = np.array([float(mdp.expert(s)) for s in range(mdp.n_states)])
        # BC: labels on the expert's path only
        states, _ = mdp.rollout(expert_policy, rng)
        bc_policy = learner.fit(states, [mdp.expert(s) for s in states])
        # DAgger: aggregate the learner's own states, labelled by the expert
        data_s, policy = list(states), bc_policy
        for _ in range(args.chain_rounds):
            for _ in range(args.chain_rollouts):
                data_s += mdp.rollout(policy, rng)[0]
            policy = learner.fit(data_s, [mdp.expert(s) for s in data_s])
        out["bc"].append(
            float(np.mean([mdp.rollout(bc_policy, rng)[1] for _ in range(args.chain_trials)]))
        )
        out["dagger"].append(
            float(np.mean([mdp.rollout(policy, rng)[1] for _ in range(args.chain_trials)]))
        )
    logh = np.log(horizons)
    for m in ("bc", "dagger"):
        y = np.log(np.maximum(out[m], 1e-9))
        out[f"{m}_slope"] = float(np.polyfit(logh, y, 1)[0])
    return out


def plot(results1: dict, results2: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results1)
    fig, axes = plt.subplots(1, n + 1, figsize=(5.2 * (n + 1), 3.8))
    axes = np.atleast_1d(axes)
    for ax, (task, res) in zip(axes, results1.items()):
        for m, s in res["methods"].items():
            ax.errorbar(
                s["labels"],
                s["success_mean"],
                yerr=s["success_std"],
                marker="o",
                capsize=3,
                label=m,
            )
        ax.axhline(res["bc_best_success"], color="grey", ls=":", lw=1)
        ax.set(
            title=task, xlabel="expert labels (steps)", ylabel="success rate", ylim=(-0.02, 1.02)
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[-1]
    h = results2["horizons"]
    ax.loglog(h, results2["bc"], "o-", label=f"BC (slope {results2['bc_slope']:.2f})")
    ax.loglog(h, results2["dagger"], "s-", label=f"DAgger (slope {results2['dagger_slope']:.2f})")
    ax.set(
        title=f"chain MDP, eps={results2['eps']}",
        xlabel="horizon H",
        ylabel="expected cost (steps lost)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "compounding_errors.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(results1: dict, args) -> str:
    """Markdown: per task and method, best success, labels to reach BC's best (exactly and
    within the tolerance, as a fraction of BC's labels at its best), success at BC's label
    budgets, HG-DAgger's interventions."""

    def num(x, fmt):
        return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, fmt)

    tolerance = args.tolerance
    start = "from scratch" if args.cold_start else "warm-started"
    setup = (
        f"learner: MLP {'x'.join(map(str, args.hidden))}, {args.head} head, "
        f"BC {args.bc_steps} steps, "
        f"interactive rounds {start} with {args.steps_per_round} steps; "
        f"start spread {args.init_spread:g}; "
        f"{args.eval_episodes} evaluation episodes per point; mean over seeds "
        f"{' '.join(map(str, args.seeds))}"
    )
    lines = []
    for task, res in results1.items():
        budgets = " / ".join(f"{b:.0f}" for b in res["bc_labels"])
        lines += [
            f"\n{task}: BC's best {res['bc_best_success']:.0%} at {res['bc_best_labels']:.0f} labels",
            f"({setup})",
            "",
            f"| method | best | labels at best | labels to BC's best (x BC) | "
            f"to within {tolerance * 100:.0f} points (x BC) | success at {budgets} labels | "
            "expert-controlled steps | interventions |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m, s in res["methods"].items():
            at = " / ".join(num(v, ".0%") for v in s["success_at_bc_labels"])
            lines.append(
                f"| {m} | {s['best_success']:.0%} | {s['labels_at_best']:.0f} | "
                f"{num(s['labels_to_reach_bc_best'], '.0f')} ({num(s['fraction_of_bc_labels'], '.2f')}) | "
                f"{num(s['labels_to_within_tolerance'], '.0f')} ({num(s['fraction_within_tolerance'], '.2f')}) | "
                f"{at} | {num(s.get('expert_controlled_steps'), '.0f')} | "
                f"{num(s.get('mean_intervention_fraction'), '.0%')} |"
            )
    return "\n".join(lines)


# the settings that the cached runs in --out depend on (tasks, seeds and methods may differ)
CACHED_SETTINGS = (
    "bc_demos",
    "bc_steps",
    "hidden",
    "head",
    "initial_demos",
    "rounds",
    "episodes_per_round",
    "steps_per_round",
    "cold_start",
    "eval_episodes",
    "takeover",
    "handback",
    "beta_schedule",
    "beta",
    "init_spread",
)

# settings added later, with the value runs made before them used
ADDED_SETTINGS = {"head": "deterministic", "init_spread": 1.0}


def check_settings(parser, args, out: Path) -> None:
    """Refuse to mix cached runs made with other settings into this run's tables."""
    mine = json.loads(json.dumps({k: getattr(args, k) for k in CACHED_SETTINGS}))
    path = out / "settings.json"
    if path.exists():
        try:
            theirs = json.loads(path.read_text())
            assert isinstance(theirs, dict)
        except (ValueError, AssertionError, OSError):
            parser.error(f"{path} is not a settings file this script wrote; use another --out")
        theirs = {**ADDED_SETTINGS, **theirs}
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        if diff:
            what = ", ".join(f"{k}: {a} there, {b} now" for k, (a, b) in diff.items())
            parser.error(f"{out} holds runs made with other settings ({what}); use another --out")
    else:  # written whole or not at all: a killed run leaves no half file behind
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(mine, indent=2))
        os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["iltk/Lift-v0", "iltk/Push-v0"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--bc-demos", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument(
        "--bc-steps",
        type=int,
        default=20000,
        help="BC's gradient steps (the MLP's measured default: fewer leave BC undertrained)",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=BCConfig().hidden,
        help="hidden layers of every learner's MLP (a smaller one shows where the gap opens; "
        "give each size its own --out: finished runs are read back from it)",
    )
    parser.add_argument(
        "--head",
        choices=HEADS,
        default=BCConfig().head,
        help="action head of every learner (gmm: for experts with several modes, whose "
        "labels a deterministic head averages)",
    )
    parser.add_argument("--initial-demos", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--episodes-per-round", type=int, default=5)
    parser.add_argument(
        "--steps-per-round",
        type=int,
        default=None,
        help="gradient steps of each interactive round (default: --bc-steps)",
    )
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS[1:]),
        choices=METHODS[1:],
        help="interactive methods to run against BC",
    )
    parser.add_argument(
        "--cold-start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="retrain from scratch each round, so that with --steps-per-round = --bc-steps "
        "every label count gets the same training as BC (--no-cold-start: warm-start each "
        "round from the last policy)",
    )
    parser.add_argument(
        "--beta-schedule",
        choices=("exponential", "linear", "constant"),
        default="exponential",
        help="DAgger's probability that the expert acts in round k: beta^k, 1 - k/rounds or beta",
    )
    parser.add_argument(
        "--beta", type=float, default=0.5, help="base of the exponential schedule, or the constant"
    )
    parser.add_argument(
        "--takeover",
        type=float,
        default=DaggerConfig.takeover,
        help="HG-DAgger gate: RMS action disagreement at which the expert takes over",
    )
    parser.add_argument(
        "--handback",
        type=float,
        default=DaggerConfig.handback,
        help="HG-DAgger gate: disagreement below which control returns to the policy",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="also report the labels to come within this of BC's best (evaluation noise)",
    )
    parser.add_argument(
        "--init-spread",
        type=float,
        default=1.0,
        help="spread of the tasks' start layouts (1: full ranges; small: narrow starts around "
        "a nominal layout, where BC fails by drifting off its demonstrations)",
    )
    parser.add_argument("--horizons", type=int, nargs="+", default=[10, 20, 40, 80, 160, 320])
    parser.add_argument(
        "--chain-eps", type=float, default=0.002, help="learner error rate (keep eps*H < 1)"
    )
    parser.add_argument(
        "--chain-trials", type=int, default=4000, help="evaluation rollouts per horizon"
    )
    parser.add_argument("--chain-rounds", type=int, default=5, help="DAgger rounds")
    parser.add_argument("--chain-rollouts", type=int, default=200, help="DAgger rollouts per round")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: Lift only, one seed, 3 rounds, 3000 steps per training, fewer episodes",
    )
    parser.add_argument(
        "--out", default=None, help="run folder (default: runs/bench/compounding[_quick])"
    )
    args = parser.parse_args()
    if any(h < 1 for h in args.hidden):
        parser.error(f"--hidden sizes must be >= 1, got {args.hidden}")
    if not 0 <= args.beta <= 1:
        parser.error("--beta must be in [0, 1]")
    if not 0 <= args.init_spread <= 1:
        parser.error("--init-spread must be in [0, 1]")
    if not 0 <= args.handback <= args.takeover:
        parser.error("need 0 <= --handback <= --takeover")
    if args.quick:
        args.tasks, args.seeds, args.eval_episodes, args.chain_trials = (
            ["iltk/Lift-v0"],
            [0],
            20,
            300,
        )
        args.bc_demos, args.rounds, args.bc_steps, args.steps_per_round = [5, 10, 20], 3, 3000, None
    if args.steps_per_round is None:
        args.steps_per_round = args.bc_steps
    if min(args.bc_steps, args.steps_per_round, args.rounds + 1, *args.bc_demos) < 1:
        parser.error("--bc-steps, --steps-per-round and --bc-demos must be >= 1, --rounds >= 0")
    out = Path(
        args.out or ("runs/bench/compounding_quick" if args.quick else "runs/bench/compounding")
    )
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    check_settings(parser, args, out)
    t0 = time.perf_counter()
    r2 = part2(args)
    print(f"chain MDP (eps {args.chain_eps}): horizon {r2['horizons']}")
    print(f"  BC cost     {[round(c, 2) for c in r2['bc']]}  log-log slope {r2['bc_slope']:.2f}")
    print(
        f"  DAgger cost {[round(c, 2) for c in r2['dagger']]}  log-log slope {r2['dagger_slope']:.2f}"
    )
    r1 = part1(args, out)
    png = plot(r1, r2, out)
    md = table(r1, args)
    print(md)
    (out / "compounding_errors.md").write_text(md.lstrip() + "\n")
    (out / "compounding_errors.json").write_text(
        json.dumps(
            {"tasks": r1, "chain": r2, "args": vars(args), "wall_s": time.perf_counter() - t0},
            indent=2,
        )
    )
    print(f"wrote {out / 'compounding_errors.json'} and {png} ({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
