"""Deep IRL on locomotion against imitation 1.0.1's GAIL and AIRL: Hopper from 16 expert
trajectories, the same trajectories and the same env-step budget on both sides.

1. An iltk PPO expert on Hopper-v5 (`iltk ppo`, ``--expert-steps``; kept in OUT/expert and
   reused), its return over ``--eval-episodes`` episodes;
2. ``--trajectories`` of its episodes recorded (`iltk collect --policy`: OUT/demos.hdf5),
   and the same arrays written for imitation (OUT/demos.npz: observations with the one
   after the last action, actions, one row per episode);
3. `iltk irl` on them for ``--steps`` env steps (its defaults unless ``--irl-args``): the
   return of its policy on Hopper-v5, as a fraction of the expert's;
4. BC (`iltk train --algo bc` at its defaults) on the same trajectories, for scale: no env
   steps at all;
5. imitation's GAIL and AIRL in their own venv (``runs/bench/imitation-venv``: torch 2.13.0,
   imitation 1.0.1, gymnasium 0.29 with Hopper-v4, the closest version; made on first use)
   on the npz for the same ``--steps``, with SB3's PPO as the generator and the tuned
   settings of imitation's own Hopper benchmark (its benchmarking/ configs: 8 envs, the
   rollout, PPO's and the discriminator's hyperparameters, running norms on the policy's
   inputs and the reward's inputs and output); the return of each learner on Hopper-v4.

Wall-clock of every learner. Writes OUT.json and OUT.png (``--out``, default
runs/bench/irl_hopper). The expert and its recorded trajectories are kept in OUT and reused
(delete OUT/expert or OUT/demos.hdf5 to make them again), and each learner's result is kept
in OUT/<learner>_s<seed>.json, so that the learners and seeds can run as separate processes,
one per core, after one run has made the expert (``--seed`` is the learners'; the expert is
the first run's): OUT.json, the table (mean over seeds) and the plot hold every result found
there.

    python benchmarks/irl_hopper.py                          # 1M expert steps, 2M each learner
    python benchmarks/irl_hopper.py --expert-steps 20000 --steps 8192 --eval-episodes 2  # smoke
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from irl import imitation_python  # noqa: E402  (the tabular benchmark's venv, made once)

IMITATION_SIDE = textwrap.dedent(
    '''
    """Runs inside the imitation venv: GAIL or AIRL on the npz's trajectories."""
    import json, sys, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np, torch
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from imitation.algorithms.adversarial.airl import AIRL
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.data.types import Trajectory
    from imitation.policies.base import NormalizeFeaturesExtractor
    from imitation.rewards.reward_nets import (BasicRewardNet, BasicShapedRewardNet,
                                               NormalizedRewardNet)
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env

    algo, path_in, path_out, steps, seed, episodes, env_id, curve_every = sys.argv[1:9]
    steps, seed, episodes, curve_every = int(steps), int(seed), int(episodes), int(curve_every)
    torch.set_num_threads(1)
    data = np.load(path_in)
    trajs = [Trajectory(obs=data[f"obs_{i}"], acts=data[f"acts_{i}"], infos=None,
                        terminal=bool(data[f"terminal_{i}"]))
             for i in range(int(data["n"]))]
    # imitation's tuned Hopper settings (benchmarking/example_{gail,airl}_seals_hopper_best_
    # hp_eval.json, the configs of its benchmark table): 8 envs, rl.batch_size the rollout
    # (4096 GAIL, 8192 AIRL), PPO's tuned kwargs, a ReLU 64-64 policy on running-normalized
    # observations, a reward net with a running norm on its inputs and on its output
    tuned = {
        "gail": dict(rollout=4096, demo_batch=128, replay=4096, disc=8, ent=0.001255299425412744,
                     lr=4.3984856156897565e-5, net=BasicRewardNet),
        "airl": dict(rollout=8192, demo_batch=2048, replay=8192, disc=16, ent=0.009709494745755033,
                     lr=0.0005807211840258373, net=BasicShapedRewardNet),
    }[algo]
    n_envs = 8
    rng = np.random.default_rng(seed)
    venv = make_vec_env(env_id, rng=rng, n_envs=n_envs)
    n_transitions = sum(len(t.acts) for t in trajs)  # a smoke run's few: the batch shrinks
    policy_kwargs = dict(activation_fn=torch.nn.ReLU, net_arch=dict(pi=[64, 64], vf=[64, 64]),
                         features_extractor_class=NormalizeFeaturesExtractor,
                         features_extractor_kwargs=dict(normalize_class=RunningNorm))
    learner = PPO(env=venv, policy="MlpPolicy", policy_kwargs=policy_kwargs,
                  n_steps=tuned["rollout"] // n_envs, batch_size=512, clip_range=0.1,
                  ent_coef=tuned["ent"], gae_lambda=0.98, gamma=0.995,
                  learning_rate=tuned["lr"], max_grad_norm=0.9, n_epochs=20,
                  vf_coef=0.20315938606555833, seed=seed)
    base = tuned["net"](venv.observation_space, venv.action_space,
                        normalize_input_layer=RunningNorm)
    net = NormalizedRewardNet(base, normalize_output_layer=RunningNorm)
    cls = GAIL if algo == "gail" else AIRL
    trainer = cls(demonstrations=trajs, demo_batch_size=min(tuned["demo_batch"], n_transitions),
                  gen_replay_buffer_capacity=tuned["replay"],
                  n_disc_updates_per_round=tuned["disc"], venv=venv, gen_algo=learner,
                  reward_net=net, allow_variable_horizon=True)
    env = gym.make(env_id)
    curve, next_eval = [], curve_every
    def evaluate(round_num):  # the learning curve: 5 episodes every curve_every env steps
        global next_eval
        if curve_every and learner.num_timesteps >= next_eval:
            rets, _ = evaluate_policy(learner, env, n_eval_episodes=5, return_episode_rewards=True)
            curve.append([int(learner.num_timesteps), float(np.mean(rets)),
                          time.perf_counter() - t0])
            next_eval += curve_every
    t0 = time.perf_counter()
    trainer.train(steps, callback=evaluate)
    seconds = time.perf_counter() - t0
    rets, _ = evaluate_policy(learner, env, n_eval_episodes=episodes, return_episode_rewards=True)
    json.dump({"algo": algo, "seconds": seconds, "return": float(np.mean(rets)),
               "returns": [float(r) for r in rets], "env": env_id,
               "env_steps": int(learner.num_timesteps), "curve": curve}, open(path_out, "w"))
    '''
)


def export_npz(hdf5: Path, npz: Path) -> int:
    """The episode file's trajectories as imitation's Trajectory arrays."""
    from iltk.data import DemoFile

    arrays: dict = {}
    with DemoFile(hdf5) as f:
        for i, name in enumerate(f.demos):
            obs = f.read(name, "obs/state").astype(np.float32)
            last = f.read(name, "next_obs/state")[-1:].astype(np.float32)
            arrays[f"obs_{i}"] = np.concatenate([obs, last])
            arrays[f"acts_{i}"] = f.read(name, "actions").astype(np.float32)
            dones = f.read(name, "dones")
            arrays[f"terminal_{i}"] = bool(dones[-1]) and len(obs) < 1000
        arrays["n"] = len(f.demos)
    np.savez(npz, **arrays)
    return len(f.demos)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--expert-steps", type=int, default=1_000_000)
    parser.add_argument(
        "--expert-checkpoint", choices=["best", "last"], default="best",
        help="the expert's PPO checkpoint: best (chosen by its run's 5-episode evaluations; a "
        "Hopper run's last policy can fall in a third of its episodes) or last",
    )  # fmt: skip
    parser.add_argument("--trajectories", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2_000_000, help="env steps of each learner")
    parser.add_argument(
        "--learners", nargs="*", default=["iltk", "bc", "gail", "airl"],
        help="iltk (or any name starting with iltk, e.g. iltk-8envs, for a run with other "
        "--irl-args: its result is OUT/<name>_s<seed>.json), bc (iltk's, no env steps), gail, "
        "airl; none: only the "
        "table and plot of the results already in OUT",
    )  # fmt: skip
    parser.add_argument(
        "--curve-every", type=int, default=100_000,
        help="env steps between the learning curve's evaluations (5 episodes each; 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--irl-args", default="", help='extra `iltk irl` flags, one string: "--game dual ..."'
    )
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench/irl_hopper")
    args = parser.parse_args()

    from iltk.cli import main as iltk
    from iltk.evaluate import evaluate_policy
    from iltk.policies import load_policy

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"args": vars(args), "learners": {}}
    expert = out / "expert"
    if not (expert / "last").exists():
        t0 = time.perf_counter()
        code = iltk(["ppo", "--task", "Hopper-v5", "--total-timesteps", str(args.expert_steps),
                     "--out", str(expert), "--seed", str(args.seed), "--eval-episodes", "5",
                     "--overwrite", "--no-progress"])  # fmt: skip
        assert code == 0, "the expert's PPO run failed"
        results["expert_seconds"] = time.perf_counter() - t0
    # the expert's return is measured again here, on --eval-episodes unseen episodes
    ev = evaluate_policy(load_policy(expert / args.expert_checkpoint), "Hopper-v5",
                         args.eval_episodes, seed=10_000)  # fmt: skip
    results["expert_return"] = ev.mean_return
    print(f"expert: return {ev.mean_return:.0f} over {args.eval_episodes} episodes", flush=True)
    demos, npz = out / "demos.hdf5", out / "demos.npz"
    if not demos.exists():
        tmp = demos.with_suffix(".partial.hdf5")  # a second process never reads half a file
        code = iltk(["collect", "--policy", str(expert / args.expert_checkpoint), "--episodes",
                     str(args.trajectories), "--out", str(tmp), "--overwrite"])  # fmt: skip
        assert code == 0, "recording the expert's trajectories failed"
        os.replace(tmp, demos)
    from iltk.data import DemoFile

    with DemoFile(demos) as f:
        if len(f.demos) != args.trajectories:
            raise SystemExit(f"{demos} holds {len(f.demos)} trajectories, not --trajectories "
                             f"{args.trajectories}: delete it to record them again")  # fmt: skip
    if not npz.exists():
        export_npz(demos, npz.with_suffix(".partial.npz"))
        os.replace(npz.with_suffix(".partial.npz"), npz)
    for learner in args.learners:
        if learner.startswith("iltk"):
            run = out / f"{learner}_s{args.seed}_irl"
            t0 = time.perf_counter()
            code = iltk(["irl", "--dataset", str(demos), "--out", str(run), "--total-timesteps",
                         str(args.steps), "--seed", str(args.seed), "--eval-every",
                         str(args.curve_every), "--eval-episodes", "5", "--overwrite",
                         "--no-progress", *shlex.split(args.irl_args)])  # fmt: skip
            assert code == 0, "iltk irl failed"
            seconds = time.perf_counter() - t0
            ev = evaluate_policy(load_policy(run / "policy"), "Hopper-v5", args.eval_episodes)
            with open(run / "metrics.csv") as f:
                rows = [r for r in csv.DictReader(f) if r["kind"] == "eval"]
            res = {
                "seconds": seconds,
                "return": ev.mean_return,
                "env": "Hopper-v5",
                "returns": [e["return"] for e in ev.per_episode],
                "irl_args": args.irl_args,
                "curve": [
                    [int(r["step"]), float(r["eval_return"]), float(r["time_s"])] for r in rows
                ],
            }
            (out / f"{learner}_s{args.seed}.json").write_text(json.dumps(res, indent=2))
        elif learner == "bc":  # iltk's BC at its defaults on the same trajectories
            run = out / f"bc_s{args.seed}"
            t0 = time.perf_counter()
            code = iltk(["train", "--algo", "bc", "--dataset", str(demos), "--out", str(run),
                         "--seed", str(args.seed), "--eval-episodes", "0", "--overwrite",
                         "--no-progress"])  # fmt: skip
            assert code == 0, "iltk train --algo bc failed"
            seconds = time.perf_counter() - t0
            ev = evaluate_policy(load_policy(run / "last"), "Hopper-v5", args.eval_episodes)
            res = {
                "seconds": seconds,
                "return": ev.mean_return,
                "env": "Hopper-v5",
                "returns": [e["return"] for e in ev.per_episode],
            }
            (out / f"bc_s{args.seed}.json").write_text(json.dumps(res, indent=2))
        elif learner in ("gail", "airl"):
            py = imitation_python()
            path = out / f"{learner}_s{args.seed}.json"
            cmd = [str(py), "-c", IMITATION_SIDE, learner, str(npz), str(path), str(args.steps),
                   str(args.seed), str(args.eval_episodes), "Hopper-v4",
                   str(args.curve_every)]  # fmt: skip
            if subprocess.run(cmd).returncode != 0:
                raise SystemExit(f"imitation's {learner} failed (its traceback is above)")
            res = json.loads(path.read_text())
        else:
            raise SystemExit(f"--learners: {learner!r} is not iltk[...], bc, gail or airl")
        print(f"{learner}: return {res['return']:.0f} "
              f"({100 * res['return'] / results['expert_return']:.0f}% of the expert's) on "
              f"{res['env']} in {res['seconds']:.0f} s", flush=True)  # fmt: skip
    # every learner's result in OUT (<learner>_s<seed>.json), this process's and others'
    for path in sorted(out.glob("*_s*.json")):
        res = json.loads(path.read_text())
        res["fraction_of_expert"] = res["return"] / results["expert_return"]
        # the first point of the curve at 90% of the expert's return: env steps and seconds
        hit = [c for c in res.get("curve", []) if c[1] >= 0.9 * results["expert_return"]]
        res["to_90pct"] = {"env_steps": hit[0][0], "seconds": hit[0][2]} if hit else None
        results["learners"][path.stem] = res
    groups: dict = {}
    for name, r in results["learners"].items():
        groups.setdefault(name.rsplit("_s", 1)[0], []).append(r)
    results["summary"] = {}
    print(f"\n{'learner':14} {'seeds':>5} {'return':>14} {'of expert':>10} {'seconds':>8} "
          f"{'steps to 90%':>13} {'s to 90%':>9}")  # fmt: skip
    for learner, rs in groups.items():
        rets = [r["return"] for r in rs]
        hits = [r["to_90pct"] for r in rs if r["to_90pct"]]
        row = {
            "seeds": len(rs),
            "return": float(np.mean(rets)),
            "return_std": float(np.std(rets)),
            "fraction_of_expert": float(np.mean(rets)) / results["expert_return"],
            "seconds": float(np.mean([r["seconds"] for r in rs])),
            "reached_90pct": len(hits),
            "to_90pct_env_steps": float(np.mean([h["env_steps"] for h in hits])) if hits else None,
            "to_90pct_seconds": float(np.mean([h["seconds"] for h in hits])) if hits else None,
        }
        results["summary"][learner] = row
        steps90 = f"{row['to_90pct_env_steps']:.0f}" if hits else "-"
        secs90 = f"{row['to_90pct_seconds']:.0f}" if hits else "-"
        print(f"{learner:14} {len(rs):5d} {row['return']:8.0f} +- {row['return_std']:4.0f} "
              f"{100 * row['fraction_of_expert']:9.0f}% {row['seconds']:8.0f} {steps90:>13} "
              f"{secs90:>9}  " + (f"({len(hits)} of {len(rs)} reached 90%)" if any(
                  r.get("curve") for r in rs) else "(no env steps)"))  # fmt: skip
    stem = Path(args.out)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {learner: f"C{i}" for i, learner in enumerate(groups)}
    for name, r in results["learners"].items():
        learner = name.rsplit("_s", 1)[0]
        if r.get("curve"):
            c = np.array(r["curve"])
            first = name == next(n for n in results["learners"] if n.startswith(learner + "_s"))
            ax.plot(c[:, 0], c[:, 1], marker=".", color=colors[learner], alpha=0.8,
                    label=f"{learner} ({r['env']})" if first else None)  # fmt: skip
    ax.axhline(results["expert_return"], color="gray", ls="--", label="expert")
    ax.axhline(0.9 * results["expert_return"], color="gray", ls=":", label="90% of it")
    ax.set(xlabel="env steps", ylabel="return (5 episodes)", title="learning curves, every seed")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    summary = results["summary"]
    bars = bx.bar(["expert", *summary], [results["expert_return"],
                  *(r["return"] for r in summary.values())],
                  yerr=[0, *(r["return_std"] for r in summary.values())], capsize=3,
                  color=["gray", *(colors[k] for k in summary)])  # fmt: skip
    for bar, r in zip(bars[1:], summary.values()):
        bx.annotate(f"{r['seconds']:.0f} s", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)  # fmt: skip
    bx.set(ylabel=f"return ({args.eval_episodes} episodes), mean over seeds",
           title=f"Hopper, {args.trajectories} trajectories, {args.steps} steps")  # fmt: skip
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    print(f"wrote {stem}.json and .png")


if __name__ == "__main__":
    main()
