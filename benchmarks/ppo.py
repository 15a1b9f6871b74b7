"""PPO: iltk against Stable-Baselines3, side by side, same machine, same settings.

Both train with SB3's PPO defaults (n_steps 2048, batch 64, 10 epochs, lr 3e-4, gamma
0.99, GAE lambda 0.95, clip 0.2, vf_coef 0.5, max_grad_norm 0.5, 64-64 tanh actor and
critic with orthogonal init, log std 0) plus observation and reward normalization (SB3:
``VecNormalize``, as RL Zoo's settings for MuJoCo; iltk: its defaults). Both use one torch
thread (iltk's default; SB3 is given the same). Reported per run: env-steps/s over the
whole ``learn`` (collection and updates), the mean return of the training episodes that
ended in the last rollout, and the return of the final policy's mean action over 10
evaluation episodes.

    python benchmarks/ppo.py --env Reacher-v5 --steps 200000 --seeds 0 1 2
    python benchmarks/ppo.py --env Hopper-v5 --steps 1000000 --num-envs 8 --seeds 0
    python benchmarks/ppo.py --env Hopper-v5 --steps 1000000 --libs iltk-kl --tag kl

Needs the bench extra (`pip install -e ".[bench]"`: stable-baselines3 2.9.2). Writes
runs/bench/ppo_<env>_<n>env.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from iltk.algos.configs import PPOConfig  # noqa: E402
from iltk.algos.ppo import train_ppo  # noqa: E402
from iltk.evaluate import evaluate_policy  # noqa: E402
from iltk.policies import load_policy  # noqa: E402


def run_iltk(
    env_id: str, steps: int, num_envs: int, seed: int, eval_episodes: int, objective="clip"
) -> dict:
    out = Path(tempfile.mkdtemp(prefix="iltk_ppo_")) / "run"
    cfg = PPOConfig(
        task=env_id,
        objective=objective,
        steps=steps,
        num_envs=num_envs,
        out=out,
        seed=seed,
        eval_every=0,
        eval_episodes=0,  # evaluated below, the same way as SB3's policy
        progress=False,
    )
    t0 = time.perf_counter()
    train_ppo(cfg)
    seconds = time.perf_counter() - t0
    import csv

    rows = [r for r in csv.DictReader((out / "metrics.csv").open()) if r["ep_return"]]
    curve = [(int(r["step"]), float(r["ep_return"])) for r in rows]
    policy = load_policy(out / "last")
    res = evaluate_policy(policy, env_id, eval_episodes, seed=10_000)
    return {
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        # the training episodes that ended in the last rollout (iltk logs their mean)
        "final_train_return": curve[-1][1] if curve else float("nan"),
        "eval_return": res.mean_return,
        "curve": curve,
    }


def run_sb3(env_id: str, steps: int, num_envs: int, seed: int, eval_episodes: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    venv = VecNormalize(make_vec_env(env_id, n_envs=num_envs, seed=seed), gamma=0.99)
    curve: list[tuple[int, float]] = []

    class Episodes(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    curve.append((self.num_timesteps, float(info["episode"]["r"])))
            return True

    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(steps, callback=Episodes())
    seconds = time.perf_counter() - t0
    venv.training, venv.norm_reward = False, False
    env = gym.make(env_id)
    returns = []
    for k in range(eval_episodes):
        obs, _ = env.reset(seed=10_000 + k)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(venv.normalize_obs(obs[None]), deterministic=True)
            obs, r, term, trunc, _ = env.step(action[0])
            total += r
            done = term or trunc
        returns.append(total)
    env.close()
    # the training episodes that ended in the last rollout (2048 steps per env)
    last = [ret for step, ret in curve if step > steps - 2048 * num_envs]
    return {
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "final_train_return": float(np.mean(last)) if last else float("nan"),
        "eval_return": float(np.mean(returns)),
        "curve": curve,
    }


def per_rollout(curve, rollout: int):
    """Episode returns averaged per rollout of ``rollout`` steps (iltk logs them so)."""
    bins: dict[int, list[float]] = {}
    for step, ret in curve:
        bins.setdefault(-(-step // rollout) * rollout, []).append(ret)
    return sorted((k, float(np.mean(v))) for k, v in bins.items())


def plot(results: dict, env: str, num_envs: int, sb3_version: str, path: Path) -> None:
    """Training return against env steps, both libraries at one resolution (per rollout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    colors = (("iltk", "tab:blue"), ("iltk-kl", "tab:green"), ("sb3", "tab:orange"))
    for lib, color in colors:
        for i, r in enumerate(results.get(lib, [])):
            curve = r["curve"] if lib != "sb3" else per_rollout(r["curve"], 2048 * num_envs)
            if curve:
                xs, ys = zip(*curve)
                ax.plot(xs, ys, color=color, alpha=0.8, label=lib if i == 0 else None)
    ax.set(
        xlabel="environment steps",
        ylabel="training episode return (per rollout)",
        title=f"PPO on {env}: iltk vs SB3 {sb3_version}",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="Reacher-v5")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument(
        "--libs",
        nargs="+",
        default=["iltk", "sb3"],
        choices=["iltk", "iltk-kl", "sb3"],
        help="iltk-kl: iltk with --objective kl-penalty (its defaults: kl_target 0.01, beta 1)",
    )
    parser.add_argument("--tag", default="", help="suffix of the written JSON and PNG")
    parser.add_argument("--replot", default=None, help="redraw the PNG of a written JSON")
    args = parser.parse_args()
    if args.replot:
        d = json.loads(Path(args.replot).read_text())
        plot(
            d["runs"],
            d["env"],
            d["num_envs"],
            d["sb3_version"],
            Path(args.replot).with_suffix(".png"),
        )
        return
    import stable_baselines3

    runners = {
        "iltk": run_iltk,
        "iltk-kl": lambda *a: run_iltk(*a, objective="kl-penalty"),
        "sb3": run_sb3,
    }
    results: dict[str, list[dict]] = {lib: [] for lib in args.libs}
    for seed in args.seeds:
        for lib in args.libs:
            r = runners[lib](args.env, args.steps, args.num_envs, seed, args.eval_episodes)
            r["seed"] = seed
            results[lib].append(r)
            print(
                f"{lib:7} seed {seed}: {r['steps_per_s']:7.0f} steps/s, {r['seconds']:6.0f} s, "
                f"train return {r['final_train_return']:8.1f}, eval return {r['eval_return']:8.1f}",
                flush=True,
            )
    print(
        f"\n{args.env}, {args.steps} steps, {args.num_envs} env(s), seeds {args.seeds}; "
        f"stable-baselines3 {stable_baselines3.__version__}, torch {torch.__version__}, "
        f"{os.cpu_count()} cpus"
    )
    print(f"{'':8} {'steps/s':>16} {'train return':>18} {'eval return':>18}")
    summary = {}
    for lib, runs in results.items():
        sps = [r["steps_per_s"] for r in runs]
        tr = [r["final_train_return"] for r in runs]
        ev = [r["eval_return"] for r in runs]
        summary[lib] = {
            "steps_per_s": [float(np.mean(sps)), float(np.std(sps))],
            "train_return": [float(np.mean(tr)), float(np.std(tr))],
            "eval_return": [float(np.mean(ev)), float(np.std(ev))],
        }
        print(
            f"{lib:8} {np.mean(sps):9.0f} ± {np.std(sps):4.0f} {np.mean(tr):11.1f} ± {np.std(tr):5.1f}"
            f" {np.mean(ev):11.1f} ± {np.std(ev):5.1f}"
        )
    if {"iltk", "sb3"} <= set(results):
        ratio = summary["iltk"]["steps_per_s"][0] / summary["sb3"]["steps_per_s"][0]
        summary["speedup"] = ratio
        print(f"iltk / sb3 steps/s: {ratio:.2f}x")
    stem = f"ppo_{args.env.replace('/', '_')}_{args.num_envs}env" + (
        f"_{args.tag}" if args.tag else ""
    )
    out = Path("runs/bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(
        json.dumps(
            {
                "env": args.env,
                "steps": args.steps,
                "num_envs": args.num_envs,
                "seeds": args.seeds,
                "sb3_version": stable_baselines3.__version__,
                "torch": torch.__version__,
                "summary": summary,
                "runs": results,
            },
            indent=2,
        )
    )
    plot(results, args.env, args.num_envs, stable_baselines3.__version__, out / f"{stem}.png")
    print(f"wrote {out / stem}.json and .png")


if __name__ == "__main__":
    main()
