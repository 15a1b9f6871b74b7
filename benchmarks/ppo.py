"""PPO: iltk against Stable-Baselines3, side by side, same machine, same settings.

Both train with SB3's PPO defaults (n_steps 2048, batch 64, 10 epochs, lr 3e-4, gamma
0.99, GAE lambda 0.95, clip 0.2, vf_coef 0.5, max_grad_norm 0.5, 64-64 tanh actor and
critic with orthogonal init, log std 0) plus observation and reward normalization (SB3:
``VecNormalize``, as RL Zoo's settings for MuJoCo; iltk: its defaults). Both use one torch
thread (iltk's default; SB3 is given the same). Reported per run: env-steps/s over the
whole ``learn`` and its split (collecting rollouts, updates), the mean return of the
training episodes that ended in the last rollout and in the last 10% of the steps, the
return of the final policy's mean action and of its sampled actions over
``--eval-episodes`` (30) evaluation episodes, and the final log std.

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

from iltk.algos.ppo import train_ppo  # noqa: E402
from iltk.algos.settings import PPOConfig, PPOSettings  # noqa: E402
from iltk.evaluate import evaluate_policy  # noqa: E402
from iltk.policies import load_policy  # noqa: E402


def episode_returns(act, env_id: str, episodes: int) -> list[float]:
    """Returns of ``episodes`` seeded episodes (seeds 10000..) with ``act(obs) -> action``."""
    env = gym.make(env_id)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=10_000 + k)
        done, total = False, 0.0
        while not done:
            action = np.clip(act(obs), env.action_space.low, env.action_space.high)
            obs, r, term, trunc, _ = env.step(action)
            total += r
            done = term or trunc
        returns.append(total)
    env.close()
    return returns


def tail_mean(curve, steps: int) -> float:
    """Mean return of the training episodes that ended in the last 10% of the steps (the
    last rollout alone holds 2-3 Hopper episodes and swings by 1,000 between rollouts)."""
    tail = [ret for step, ret in curve if step > 0.9 * steps]
    return float(np.mean(tail)) if tail else float("nan")


def run_iltk(
    env_id: str,
    steps: int,
    num_envs: int,
    seed: int,
    eval_episodes: int,
    objective="clip",
    compile=False,
    update_backend="torch",
) -> dict:
    out = Path(tempfile.mkdtemp(prefix="iltk_ppo_")) / "run"
    cfg = PPOConfig(
        task=env_id,
        ppo=PPOSettings(
            objective=objective,
            compile=compile,
            update_backend=update_backend,
            num_envs=num_envs,
        ),
        total_timesteps=steps,
        out=out,
        seed=seed,
        eval_every=0,
        eval_episodes=0,  # evaluated below, the same way as SB3's policy
        progress=False,
    )
    t0 = time.perf_counter()
    results = train_ppo(cfg)
    seconds = time.perf_counter() - t0
    import csv

    rows = [r for r in csv.DictReader((out / "metrics.csv").open()) if r["ep_return"]]
    # iltk logs the mean of the episodes that ended in each rollout (not their count): the
    # tail mean weights rollouts equally, and SB3's curve is averaged per rollout to match
    curve = [(int(r["step"]), float(r["ep_return"])) for r in rows]
    policy = load_policy(out / "last")
    res = evaluate_policy(policy, env_id, eval_episodes, seed=10_000)
    log_std = policy.log_std.detach().numpy().astype(np.float64)
    rng = np.random.default_rng(seed)

    def sampled(obs):
        with torch.no_grad():
            x = policy.normalize(torch.as_tensor(obs, dtype=torch.float32)[None])
            mean = policy.actor(x)[0].numpy()
        return mean + np.exp(log_std) * rng.standard_normal(mean.shape)

    return {
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "collect_s": results["collect_s"],
        "update_s": results["update_s"],
        # the training episodes that ended in the last rollout (iltk logs their mean)
        "final_train_return": curve[-1][1] if curve else float("nan"),
        "tail_train_return": tail_mean(curve, steps),
        "eval_return": res.mean_return,
        "eval_return_sampled": float(np.mean(episode_returns(sampled, env_id, eval_episodes))),
        "final_log_std": log_std.tolist(),
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
    spent = {"collect": 0.0, "update": 0.0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t

        return wrapper

    # where SB3's time goes: its two phases, timed on this instance
    model.collect_rollouts = timed("collect", model.collect_rollouts)
    model.train = timed("update", model.train)
    t0 = time.perf_counter()
    model.learn(steps, callback=Episodes())
    seconds = time.perf_counter() - t0
    venv.training, venv.norm_reward = False, False

    def policy(deterministic):
        return lambda obs: model.predict(
            venv.normalize_obs(obs[None]), deterministic=deterministic
        )[0][0]

    # the training episodes that ended in the last rollout (2048 steps per env)
    last = [ret for step, ret in curve if step > steps - 2048 * num_envs]
    return {
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "collect_s": spent["collect"],
        "update_s": spent["update"],
        "final_train_return": float(np.mean(last)) if last else float("nan"),
        # per rollout, as iltk's (episodes averaged within each rollout first)
        "tail_train_return": tail_mean(per_rollout(curve, 2048 * num_envs), steps),
        "eval_return": float(np.mean(episode_returns(policy(True), env_id, eval_episodes))),
        "eval_return_sampled": float(
            np.mean(episode_returns(policy(False), env_id, eval_episodes))
        ),
        "final_log_std": model.policy.log_std.detach().numpy().astype(np.float64).tolist(),
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
    colors = (
        ("iltk", "tab:blue"),
        ("iltk-kl", "tab:green"),
        ("iltk-compile", "tab:purple"),
        ("sb3", "tab:orange"),
    )
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
    parser.add_argument("--eval-episodes", type=int, default=30)
    parser.add_argument(
        "--libs",
        nargs="+",
        default=["iltk", "sb3"],
        choices=["iltk", "iltk-kl", "iltk-compile", "iltk-numpy", "sb3"],
        help="iltk: its defaults (the torch update, eager); iltk-kl: with --ppo.objective"
        " kl-penalty (its defaults: kl_target 0.01, beta 1); iltk-compile: with --ppo.compile;"
        " iltk-numpy: with --ppo.update-backend numpy (the loss's gradients written out)",
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
        "iltk-compile": lambda *a: run_iltk(*a, compile=True),
        "iltk-numpy": lambda *a: run_iltk(*a, update_backend="numpy"),
        "sb3": run_sb3,
    }
    results: dict[str, list[dict]] = {lib: [] for lib in args.libs}
    for seed in args.seeds:
        for lib in args.libs:
            r = runners[lib](args.env, args.steps, args.num_envs, seed, args.eval_episodes)
            r["seed"] = seed
            results[lib].append(r)
            print(
                f"{lib:10} seed {seed}: {r['steps_per_s']:7.0f} steps/s, {r['seconds']:6.0f} s "
                f"(collect {r['collect_s']:.0f} s, update {r['update_s']:.0f} s), "
                f"train return {r['final_train_return']:8.1f} (last 10%: "
                f"{r['tail_train_return']:8.1f}), eval return {r['eval_return']:8.1f} "
                f"(sampled {r['eval_return_sampled']:8.1f}), "
                f"log std {np.mean(r['final_log_std']):.2f}",
                flush=True,
            )
    print(
        f"\n{args.env}, {args.steps} steps, {args.num_envs} env(s), seeds {args.seeds}; "
        f"stable-baselines3 {stable_baselines3.__version__}, torch {torch.__version__}, "
        f"{os.cpu_count()} cpus"
    )
    columns = {
        "steps_per_s": "steps/s",
        "collect_s": "collect s",
        "update_s": "update s",
        "final_train_return": "train (last)",
        "tail_train_return": "train (10%)",
        "eval_return": "eval",
        "eval_return_sampled": "eval sampled",
    }
    print(f"{'':8}" + "".join(f"{name:>20}" for name in columns.values()) + f"{'log std':>10}")
    summary = {}
    for lib, runs in results.items():
        summary[lib] = {
            key: [float(np.mean([r[key] for r in runs])), float(np.std([r[key] for r in runs]))]
            for key in columns
        }
        summary[lib]["log_std"] = float(np.mean([np.mean(r["final_log_std"]) for r in runs]))
        cells = "".join(f"{m:12.1f} ± {sd:5.1f}" for m, sd in (summary[lib][k] for k in columns))
        print(f"{lib:8}{cells}{summary[lib]['log_std']:10.2f}")
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
