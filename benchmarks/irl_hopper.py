"""Deep IRL on locomotion against imitation 1.0.1's GAIL and AIRL: Hopper from 16 expert
trajectories, the same trajectories and the same env-step budget on both sides.

1. An iltk PPO expert on Hopper-v5 (`iltk ppo`, ``--expert-steps``; kept in OUT/expert and
   reused), its return over ``--eval-episodes`` episodes;
2. ``--trajectories`` of its episodes recorded (`iltk collect --policy`: OUT/demos.hdf5),
   and the same arrays written for imitation (OUT/demos.npz: observations with the one
   after the last action, actions, one row per episode);
3. `iltk irl` on them for ``--steps`` env steps (its defaults unless ``--irl-args``): the
   return of its policy on Hopper-v5, as a fraction of the expert's;
4. imitation's GAIL and AIRL in their own venv (``runs/bench/imitation-venv``: torch 2.13.0,
   imitation 1.0.1, gymnasium 0.29 with Hopper-v4, the closest version; made on first use)
   on the npz for the same ``--steps``, with SB3's PPO as the generator and the settings of
   imitation's own Hopper examples (8 envs, demo batch 1024 for GAIL and 2048 for AIRL,
   replay of 512, 8 and 16 discriminator steps per round, a running-norm reward net); the
   return of each learner on Hopper-v4.

Wall-clock of every learner. Writes OUT.json and OUT.png (``--out``, default
runs/bench/irl_hopper).

    python benchmarks/irl_hopper.py                          # 1M expert steps, 2M each learner
    python benchmarks/irl_hopper.py --expert-steps 20000 --steps 8192 --eval-episodes 2  # smoke
"""

from __future__ import annotations

import argparse
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
    from stable_baselines3.ppo import MlpPolicy
    from imitation.algorithms.adversarial.airl import AIRL
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.data.types import Trajectory
    from imitation.rewards.reward_nets import BasicRewardNet, BasicShapedRewardNet
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env

    algo, path_in, path_out, steps, seed, episodes, env_id = sys.argv[1:8]
    steps, seed, episodes = int(steps), int(seed), int(episodes)
    torch.set_num_threads(1)
    data = np.load(path_in)
    trajs = [Trajectory(obs=data[f"obs_{i}"], acts=data[f"acts_{i}"], infos=None,
                        terminal=bool(data[f"terminal_{i}"]))
             for i in range(int(data["n"]))]
    rng = np.random.default_rng(seed)
    venv = make_vec_env(env_id, rng=rng, n_envs=8)
    n_transitions = sum(len(t.acts) for t in trajs)  # a smoke run's few: the batch shrinks
    learner = PPO(env=venv, policy=MlpPolicy, batch_size=64, ent_coef=0.0,
                  learning_rate=0.0004, gamma=0.95, n_epochs=5, seed=seed)
    if algo == "gail":
        net = BasicRewardNet(venv.observation_space, venv.action_space,
                             normalize_input_layer=RunningNorm)
        trainer = GAIL(demonstrations=trajs, demo_batch_size=min(1024, n_transitions),
                       gen_replay_buffer_capacity=512, n_disc_updates_per_round=8,
                       venv=venv, gen_algo=learner, reward_net=net,
                       allow_variable_horizon=True)
    else:
        net = BasicShapedRewardNet(venv.observation_space, venv.action_space,
                                   normalize_input_layer=RunningNorm)
        trainer = AIRL(demonstrations=trajs, demo_batch_size=min(2048, n_transitions),
                       gen_replay_buffer_capacity=512, n_disc_updates_per_round=16,
                       venv=venv, gen_algo=learner, reward_net=net,
                       allow_variable_horizon=True)
    t0 = time.perf_counter()
    trainer.train(steps)
    seconds = time.perf_counter() - t0
    env = gym.make(env_id)
    rets, _ = evaluate_policy(learner, env, n_eval_episodes=episodes, return_episode_rewards=True)
    json.dump({"algo": algo, "seconds": seconds, "return": float(np.mean(rets)),
               "returns": [float(r) for r in rets], "env": env_id,
               "env_steps": int(learner.num_timesteps)}, open(path_out, "w"))
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
    parser.add_argument("--trajectories", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2_000_000, help="env steps of each learner")
    parser.add_argument("--learners", nargs="+", default=["iltk", "gail", "airl"])
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
    # the last policy (best/ is chosen by 5-episode evaluations: a noisy pick)
    ev = evaluate_policy(load_policy(expert / "last"), "Hopper-v5", args.eval_episodes, seed=10_000)
    results["expert_return"] = ev.mean_return
    print(f"expert: return {ev.mean_return:.0f} over {args.eval_episodes} episodes", flush=True)
    demos, npz = out / "demos.hdf5", out / "demos.npz"
    code = iltk(["collect", "--policy", str(expert / "last"), "--episodes",
                 str(args.trajectories), "--out", str(demos), "--overwrite"])  # fmt: skip
    assert code == 0, "recording the expert's trajectories failed"
    export_npz(demos, npz)
    for learner in args.learners:
        if learner == "iltk":
            run = out / "iltk_irl"
            t0 = time.perf_counter()
            code = iltk(["irl", "--dataset", str(demos), "--out", str(run), "--total-timesteps",
                         str(args.steps), "--seed", str(args.seed), "--eval-every", "0",
                         "--eval-episodes", "5", "--overwrite", "--no-progress",
                         *shlex.split(args.irl_args)])  # fmt: skip
            assert code == 0, "iltk irl failed"
            seconds = time.perf_counter() - t0
            ev = evaluate_policy(load_policy(run / "policy"), "Hopper-v5", args.eval_episodes)
            res = {"seconds": seconds, "return": ev.mean_return, "env": "Hopper-v5"}
        else:
            py = imitation_python()
            path = out / f"{learner}.json"
            cmd = [str(py), "-c", IMITATION_SIDE, learner, str(npz), str(path), str(args.steps),
                   str(args.seed), str(args.eval_episodes), "Hopper-v4"]  # fmt: skip
            if subprocess.run(cmd).returncode != 0:
                raise SystemExit(f"imitation's {learner} failed (its traceback is above)")
            res = json.loads(path.read_text())
        res["fraction_of_expert"] = res["return"] / results["expert_return"]
        results["learners"][learner] = res
        print(f"{learner}: return {res['return']:.0f} ({100 * res['fraction_of_expert']:.0f}% "
              f"of the expert's) on {res['env']} in {res['seconds']:.0f} s", flush=True)  # fmt: skip
    stem = Path(args.out)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["expert", *results["learners"]]
    values = [results["expert_return"], *(r["return"] for r in results["learners"].values())]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(names, values, color=["gray"] + ["C0"] * (len(names) - 1))
    ax.set(ylabel="return", title=f"Hopper, {args.trajectories} trajectories, {args.steps} steps")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    print(f"wrote {stem}.json and .png")


if __name__ == "__main__":
    main()
