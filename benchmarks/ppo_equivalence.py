"""Is iltk's PPO the same algorithm as Stable-Baselines3's? Two exact comparisons.

1. The update: SB3 2.9.2 collects one rollout on ``--env`` (VecNormalize, its PPO
   defaults); iltk's actor-critic is given SB3's weights, and both run their update (10
   epochs of ``--batch-size`` minibatches, with the same permutations) on the same
   rollout, iltk once with each update backend (torch's autograd, and the numpy update
   with its gradients written out), and once more in torch from weights nudged by 1e-7,
   the control for how far float32 rounding alone carries over thousands of Adam steps.
   Printed: the largest difference from SB3's of any weight and of the log std afterwards.
2. The collection's arithmetic: SB3's raw rewards, terminations and time-limit
   truncations (``--max-episode-steps`` makes them frequent) are re-processed by iltk's
   reward normalization (running std of the discounted return, clip 10) and GAE with
   bootstrapping from the final observation's value at a truncation; printed: the largest
   difference from SB3's normalized rewards, advantages and returns, over ``--rollouts``
   rollouts with the update between them.

    python benchmarks/ppo_equivalence.py --env Hopper-v5
    python benchmarks/ppo_equivalence.py --env Hopper-v5 --num-envs 4 --batch-size 2048

Differences of 1e-6 are float32 rounding (SB3 stores its buffer in float32). Needs the
bench extra (stable-baselines3 2.9.2).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402

import iltk.rl.ppo as iltk_ppo  # noqa: E402
from iltk.algos.settings import PPOSettings  # noqa: E402
from iltk.policies import make_policy  # noqa: E402
from iltk.policies.configs import ActorCriticConfig  # noqa: E402
from iltk.rl.gae import compute_gae  # noqa: E402
from iltk.rl.stats import RunningMeanStd, scale_rewards  # noqa: E402
from iltk.rl.updaters import NumpyUpdater, TorchUpdater  # noqa: E402
from iltk.training import Optimization  # noqa: E402

GAMMA, LAM = 0.99, 0.95
# iltk's two update backends, and torch's again from weights nudged by 1e-7 (the control:
# how far float32 rounding alone carries after thousands of Adam steps on clipped losses)
BACKENDS = ("torch", "numpy", "torch, weights nudged by 1e-7")


def sb3_model(env_id: str, num_envs: int, batch_size: int, max_steps: int | None):
    kwargs = {"max_episode_steps": max_steps} if max_steps else None
    venv = VecNormalize(make_vec_env(env_id, num_envs, seed=0, env_kwargs=kwargs), gamma=GAMMA)
    return venv, PPO("MlpPolicy", venv, seed=0, batch_size=batch_size, device="cpu")


def copy_of(sb3_policy, obs_dim: int, act_dim: int):
    """iltk's actor-critic holding SB3's weights."""
    policy = make_policy(
        "actor-critic",
        ActorCriticConfig(
            state_dim=obs_dim,
            action_dim=act_dim,
            lowdim_keys=["state"],
            action_low=[-1.0] * act_dim,
            action_high=[1.0] * act_dim,
        ),
    )
    ex = sb3_policy.mlp_extractor
    layers = [
        (policy.actor[0], ex.policy_net[0]),
        (policy.actor[2], ex.policy_net[2]),
        (policy.actor[4], sb3_policy.action_net),
        (policy.critic[0], ex.value_net[0]),
        (policy.critic[2], ex.value_net[2]),
        (policy.critic[4], sb3_policy.value_net),
    ]
    with torch.no_grad():
        for dst, src in layers:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        policy.log_std.copy_(sb3_policy.log_std)
    return policy, layers


def compare_update(args) -> None:
    venv, model = sb3_model(args.env, args.num_envs, args.batch_size, None)
    _, callback = model._setup_learn(model.n_steps * args.num_envs, callback=None)
    callback.on_training_start(locals(), globals())
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    rb = model.rollout_buffer
    n = model.n_steps * args.num_envs
    obs_dim, act_dim = rb.observations.shape[-1], rb.actions.shape[-1]
    # iltk's two update backends, each from its own copy of SB3's starting weights
    copies = {backend: copy_of(model.policy, obs_dim, act_dim) for backend in BACKENDS}
    with torch.no_grad():
        nudge = torch.Generator().manual_seed(0)
        for p in copies[BACKENDS[2]][0].parameters():
            p.add_(1e-7 * torch.randn(p.shape, generator=nudge))

    def flat(x, *shape):  # env-major, as SB3's buffer flattens (T, N) before shuffling
        return torch.as_tensor(np.asarray(x, np.float32).swapaxes(0, 1).reshape(n, *shape))

    obs = flat(rb.observations, obs_dim)
    with torch.no_grad():
        mean = copies["torch"][0].actor(obs)
    batch = {
        "obs": obs,
        "actions": flat(rb.actions, act_dim),
        "advantages": flat(rb.advantages),
        "returns": flat(rb.returns),
        "logp": flat(rb.log_probs),
        "values": flat(rb.values),
        "mean": mean,
        "old_log_std": model.policy.log_std.detach().clone(),
    }
    cfg = PPOSettings(batch_size=args.batch_size)
    # the same shuffles on every side: iltk draws them with torch.randperm, SB3's buffer
    # with np.random.permutation
    perms = [np.random.default_rng(k).permutation(n) for k in range(cfg.n_epochs)]
    randperm, permutation = torch.randperm, np.random.permutation
    for backend, (policy, _) in copies.items():
        optim = Optimization(
            policy.parameters(),
            lr=cfg.lr,
            total_steps=10**6,
            grad_clip=cfg.max_grad_norm,
            eps=1e-5,
        )
        if backend == "numpy":
            updater = NumpyUpdater(policy, optim, max_grad_norm=cfg.max_grad_norm)
        else:
            updater = TorchUpdater(policy, optim)
        ours = iter(perms)
        iltk_ppo.torch.randperm = lambda *a, _ours=ours, **k: torch.as_tensor(next(_ours))
        try:
            iltk_ppo.ppo_update(policy, updater, batch, cfg, 1.0, torch.Generator())
        finally:
            iltk_ppo.torch.randperm = randperm
    theirs = iter(perms)
    np.random.permutation = lambda *a, **k: next(theirs)
    try:
        model.train()
    finally:
        np.random.permutation = permutation
    moved = float((model.policy.log_std.detach()).abs().max())
    for backend, (policy, layers) in copies.items():
        weights = max(float((d.weight - s.weight).abs().max().detach()) for d, s in layers)
        scale = max(float(s.weight.abs().max().detach()) for _, s in layers)
        log_std = float((policy.log_std - model.policy.log_std).abs().max().detach())
        print(
            f"update, iltk ({backend}) ({cfg.n_epochs} epochs of {args.batch_size}-sample"
            f" minibatches, {n} steps): weights max|diff| {weights:.1e} (max|w| {scale:.2f}),"
            f" log std max|diff| {log_std:.1e} (moved by up to {moved:.3f})"
        )
    venv.close()


def compare_collection(args) -> None:
    venv, model = sb3_model(args.env, args.num_envs, 64, args.max_episode_steps)
    N = args.num_envs
    rec: dict[str, list] = {k: [] for k in ("raw", "norm", "term", "trunc", "final_v")}

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            dones, infos = self.locals["dones"], self.locals["infos"]
            rec["raw"].append(venv.get_original_reward().copy())
            rec["norm"].append(np.asarray(self.locals["rewards"], np.float64).copy())
            trunc = np.array(
                [d and i.get("TimeLimit.truncated", False) for d, i in zip(dones, infos)]
            )
            rec["term"].append(dones & ~trunc)
            rec["trunc"].append(trunc)
            final = np.zeros(N)
            for k in np.flatnonzero(trunc):
                t_obs = model.policy.obs_to_tensor(infos[k]["terminal_observation"])[0]
                with torch.no_grad():
                    final[k] = float(model.policy.predict_values(t_obs)[0])
            rec["final_v"].append(final)
            return True

    _, callback = model._setup_learn(model.n_steps * N * args.rollouts, callback=Record())
    callback.on_training_start(locals(), globals())
    ret_rms, discounted = RunningMeanStd(), np.zeros(N)
    T = model.n_steps
    for it in range(args.rollouts):
        for v in rec.values():
            v.clear()
        model.collect_rollouts(model.env, callback, model.rollout_buffer, T)
        rewards = np.array(  # iltk's reward normalization, the function train_ppo calls
            [
                scale_rewards(ret_rms, discounted, raw, term | trunc, GAMMA)
                for raw, term, trunc in zip(rec["raw"], rec["term"], rec["trunc"])
            ]
        )
        rb = model.rollout_buffer
        with torch.no_grad():
            last = model.policy.predict_values(model.policy.obs_to_tensor(model._last_obs)[0])
        adv, ret = compute_gae(
            rewards,
            rb.values.reshape(T, N),
            np.array(rec["term"]),
            np.array(rec["trunc"]),
            np.array(rec["final_v"]),
            last.numpy().reshape(N),
            GAMMA,
            LAM,
        )
        print(
            f"rollout {it} ({T} x {N} steps, {int(np.sum(rec['term']))} terminations,"
            f" {int(np.sum(rec['trunc']))} truncations): normalized rewards max|diff|"
            f" {np.abs(rewards - np.array(rec['norm'])).max():.1e}, advantages"
            f" {np.abs(adv - rb.advantages.reshape(T, N)).max():.1e} (max|A|"
            f" {np.abs(adv).max():.1f}), returns {np.abs(ret - rb.returns.reshape(T, N)).max():.1e}"
        )
        model.train()
    venv.close()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-episode-steps", type=int, default=25)
    parser.add_argument("--rollouts", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import stable_baselines3

    print(f"stable-baselines3 {stable_baselines3.__version__}, torch {torch.__version__}")
    compare_update(args)
    compare_collection(args)


if __name__ == "__main__":
    main()
