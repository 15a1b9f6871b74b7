"""Deep MaxEnt IRL on the MuJoCo tasks: the IRL policy against BC on the same demos, and a
fresh PPO on the learned reward against PPO on the task's true dense reward.

For each task and number of demonstrations (scripted expert, episode seeds 0..n-1):

- BC: `iltk train --algo bc` at its defaults (the 3x256 MLP, 20k steps);
- IRL: `iltk irl` for ``--irl-steps`` env steps, once per ``--variants`` entry; its policy
  (``OUT/policy``, the last one, never chosen by the env's reward) is evaluated;
- PPO on each variant's learned reward (``iltk ppo --reward OUT/reward``) and PPO on the
  true dense reward, ``--ppo-steps`` each, from scratch: can the learned reward teach a
  fresh learner, and how close does it come to the reward it was never shown?
- ``ft_learned``: the cell's BC policy fine-tuned on each variant's final learned reward
  (``iltk finetune --reward OUT/reward``, ``--ft-steps``, ``--ft-kl`` its ``--kl-bc``): a
  last best response of a BC-started policy player to the reward the game ended on, held
  fixed. Its last policy is evaluated (best/ is picked by the env's success: never used).

A variant is tokens joined by ``+``: the game (``primal`` or ``dual``), then any of ``bc``
(``--warm-start bc``; ``bc<N>``: with ``--bc-steps N``), a reward class (``s``, ``sa``, ``ss``, ``shaped``), ``br<N>``
(``--best-response N``), ``cw<N>`` (``--critic-warmup N``), ``aula<X>``
(``--reward.aula X``), ``ent<X>`` (``--ppo.ent-coef X``), ``nonorm``
(``--ppo.no-normalize-reward``), ``upd<N>`` (``--reward.updates N``), ``lr<X>``
(``--reward.lr X``), ``rep<N>`` (``--reward.replay N``), ``fresh``
(``--reward.starts fresh``), ``bcw<X>`` (``--bc-weight X``), ``bcd<X>`` (``--bc-decay X``),
``in<i,j,..>`` (``--reward.inputs i j ..``), ``ft`` (``--init-policy`` the cell's BC
policy: the game fine-tunes it; run with the ``bc`` method), ``ir<variant>``
(``--init-reward`` the cell's run of that variant, ``+`` written ``_``: list it first),
``steps<N>`` (``--total-timesteps N`` instead of ``--irl-steps``).
E.g. ``dual+bc+shaped``, or ``primal+sa+rep1000 primal+sa+rep1000+ft+irprimal_sa_rep1000``
(a scratch game, then its reward player against a BC-started policy player).

Every policy is evaluated on the same ``--eval-episodes`` unseen starts (seeds 100000..).

    python benchmarks/irl_deep.py --tasks iltk/Reach-v0 --demos 1 4 16 --seeds 0 \
        --variants primal dual dual+bc

Writes OUT.json and OUT.png (``--out``, default runs/bench/irl_deep: success against demos
per method); ``--merge`` adds the rows of other runs' JSONs to the table and the plot
(``--tasks`` alone, with no task: only theirs).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from iltk.algos.finetune import finetune  # noqa: E402
from iltk.algos.irl.run import train_irl  # noqa: E402
from iltk.algos.ppo import train_ppo  # noqa: E402
from iltk.algos.settings import (  # noqa: E402
    FinetuneSettings,
    IRLConfig,
    PPOConfig,
    PPOSettings,
    RewardPlayerSettings,
    TrainConfig,
)
from iltk.algos.supervised import train  # noqa: E402
from iltk.collect import collect_demos  # noqa: E402
from iltk.evaluate import evaluate_policy  # noqa: E402
from iltk.policies import load_policy  # noqa: E402

METHODS = (
    "bc",
    "irl",
    "ppo_learned",
    "ft_learned",
    "ppo_true",
)  # all but bc, ppo_true: per variant


def variant_config(spec: str, task: str, data: Path, out: Path, args, common: dict) -> IRLConfig:
    """The `iltk irl` run a variant names (see the module docstring)."""
    tokens = spec.split("+")
    if tokens[0] not in ("primal", "dual"):
        raise SystemExit(f"variant {spec!r}: start with primal or dual")
    # a variant names everything it adds: no warm start and no critic warm-up unless asked
    irl: dict = {"game": tokens[0], "warm_start": "none", "critic_warmup": 0}
    reward = dict(updates=args.reward_updates, lr=args.reward_lr, starts=args.starts)
    ppo = {"ent_coef": 0.01}
    for t in tokens[1:]:
        if t == "bc" or (t.startswith("bc") and t[2:].isdigit()):
            irl["warm_start"] = "bc"
            if t[2:]:
                irl["bc_steps"] = int(t[2:])
        elif t == "ft":
            irl["init_policy"] = data.parent / "bc" / "last"
        elif t.startswith("steps"):
            irl["total_timesteps"] = int(t[5:])
        elif t.startswith("ir"):
            irl["init_reward"] = out.parent / f"irl_{t[2:]}"
        elif t.startswith("in"):
            reward["inputs"] = [int(i) for i in t[2:].split(",")]
        elif t.startswith("bcw"):
            irl["bc_weight"] = float(t[3:])
        elif t.startswith("bcd"):
            irl["bc_decay"] = float(t[3:])
        elif t in ("s", "sa", "ss", "shaped"):
            reward["kind"] = t
        elif t.startswith("br"):
            irl["best_response"] = int(t[2:])
        elif t.startswith("cw"):
            irl["critic_warmup"] = int(t[2:])
        elif t.startswith("aula"):
            reward["aula"] = float(t[4:])
        elif t.startswith("ent"):
            ppo["ent_coef"] = float(t[3:])
        elif t == "nonorm":
            ppo["normalize_reward"] = False
        elif t.startswith("upd"):
            reward["updates"] = int(t[3:])
        elif t.startswith("lr"):
            reward["lr"] = float(t[2:])
        elif t.startswith("rep"):
            reward["replay"] = int(t[3:])
        elif t == "fresh":
            reward["starts"] = "fresh"
        else:
            raise SystemExit(f"variant {spec!r}: unknown token {t!r}")
    irl.setdefault("total_timesteps", args.irl_steps)
    return IRLConfig(
        task=task,
        dataset=data,
        out=out,
        eval_every=0,
        eval_episodes=args.eval_episodes,
        reward=RewardPlayerSettings(**reward),
        ppo=PPOSettings(**ppo),
        **irl,
        **common,
    )


def evaluate(path: Path, task: str, episodes: int) -> float:
    res = evaluate_policy(load_policy(path), task, episodes, seed=100_000)
    return res.success_rate


def run_cell(task: str, demos: int, seed: int, args, root: Path) -> dict:
    """One task x demos x seed; each method's result is kept in the cell's results.json
    and not run again (so variants can be added to a grid later)."""
    cell = root / f"{task.split('/')[-1]}_{demos}demos_s{seed}"
    cell.mkdir(parents=True, exist_ok=True)
    saved = cell / "results.json"
    out: dict = {"task": task, "demos": demos, "seed": seed, "seconds": {}, "success": {}}
    if saved.exists():
        out = json.loads(saved.read_text())
    data = cell / "demos.hdf5"
    if not data.exists():
        collect_demos(task, data, demos, overwrite=True, progress=False)
    common = dict(progress=False, overwrite=True, seed=seed, threads=1)

    def run(method: str, fn, policy: Path) -> None:
        if method in out["success"]:
            return
        t0 = time.perf_counter()
        fn()
        out["seconds"][method] = time.perf_counter() - t0
        out["success"][method] = evaluate(policy, task, args.eval_episodes)
        saved.write_text(json.dumps(out, indent=2))

    def ppo(dest: Path, reward: Path | None):
        return lambda: train_ppo(
            PPOConfig(
                task=task,
                total_timesteps=args.ppo_steps,
                out=dest,
                reward=reward,
                eval_every=0,
                eval_episodes=0,
                **common,
            )
        )

    if "bc" in args.methods:
        cfg = TrainConfig(algo="bc", dataset=data, out=cell / "bc", eval_episodes=0, **common)
        run("bc", lambda: train(cfg), cell / "bc" / "last")
    for spec in args.variants:
        name = spec.replace("+", "_")
        if {"irl", "ppo_learned", "ft_learned"} & set(args.methods):
            cfg = variant_config(spec, task, data, cell / f"irl_{name}", args, common)
            run(f"irl[{spec}]", lambda cfg=cfg: train_irl(cfg), cell / f"irl_{name}" / "policy")
        if "ppo_learned" in args.methods:
            dest = cell / f"ppo_learned_{name}"
            run(
                f"ppo_learned[{spec}]",
                ppo(dest, cell / f"irl_{name}" / "reward"),
                dest / "last",
            )
        if "ft_learned" in args.methods:
            tag = "" if (args.ft_steps, args.ft_kl) == (100_000, 0.0) else ft_tag(args)
            dest = cell / f"ft_learned{tag}_{name}"
            ft = FinetuneSettings(
                policy=cell / "bc" / "last",
                reward=cell / f"irl_{name}" / "reward",
                total_timesteps=args.ft_steps,
                kl_bc=args.ft_kl,
                out=dest,
                eval_every=0,
                eval_episodes=1,  # its start and end evaluations: logs only, not used here
                **common,
            )
            run(f"ft_learned{tag}[{spec}]", lambda ft=ft: finetune(ft), dest / "last")
    if "ppo_true" in args.methods:
        run("ppo_true", ppo(cell / "ppo_true", None), cell / "ppo_true" / "last")
    return out


def ft_tag(args) -> str:
    return f"_s{args.ft_steps}" + (f"_kl{args.ft_kl:g}" if args.ft_kl else "")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    methods = list(dict.fromkeys(m for r in rows for m in r["success"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in methods:
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
    parser.add_argument(
        "--tasks", nargs="*", default=["iltk/Reach-v0"], help="none: only report --merge's rows"
    )
    parser.add_argument("--demos", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--irl-steps", type=int, default=300_000)
    parser.add_argument("--ppo-steps", type=int, default=200_000)
    parser.add_argument(
        "--ft-steps", type=int, default=100_000, help="ft_learned: env steps of the fine-tuning"
    )
    parser.add_argument(
        "--ft-kl", type=float, default=0.0, help="ft_learned: its KL pull towards BC (--kl-bc)"
    )
    parser.add_argument("--reward-updates", type=int, default=50)
    parser.add_argument("--reward-lr", type=float, default=1e-3)
    parser.add_argument(
        "--starts",
        default="demos",
        choices=["demos", "fresh"],
        help="where IRL's training episodes start (iltk irl --reward.starts)",
    )
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["primal"],
        help="IRL runs per cell (see above), e.g. primal dual dual+bc+shaped",
    )
    parser.add_argument("--merge", nargs="*", default=[], help="other runs' --out to report with")
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
    for other in args.merge:
        rows += json.loads(Path(other).with_suffix(".json").read_text())["rows"]
    methods = list(dict.fromkeys(m for r in rows for m in r["success"]))
    print(f"\nsuccess on {args.eval_episodes} unseen starts, mean +- std over seeds")
    for task in dict.fromkeys(r["task"] for r in rows):
        print(f"\n{task}")
        counts = sorted({r["demos"] for r in rows if r["task"] == task})
        print(f"{'method':34} " + " ".join(f"{str(n) + ' demos':>14}" for n in counts))
        for m in methods:
            vals = []
            for n in counts:
                v = [
                    r["success"][m]
                    for r in rows
                    if r["task"] == task and r["demos"] == n and m in r["success"]
                ]
                cell = f"{100 * np.mean(v):.0f}% +- {100 * np.std(v):.0f} ({len(v)})" if v else "-"
                vals.append(f"{cell:>14}")
            print(f"{m:34} " + " ".join(vals))
    stem = Path(args.out)  # runs/bench/irl_deep -> runs/bench/irl_deep.json and .png
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    plot(rows, stem.with_suffix(".png"))
    print(f"wrote {stem}.json and .png")


if __name__ == "__main__":
    main()
