"""PPO (Schulman et al. 2017) with GAE, on the one control loop: ``collect`` then ``update``.

``PPO`` is the algorithm alone; the run around it (folders, evaluation, checkpoints, logs)
is ``iltk.algos.ppo.train_ppo``. Each iteration:

1. ``collect``: ``n_steps`` control steps in each of ``num_envs`` envs through a persistent
   ``iltk.rollout.Rollout`` (unfinished episodes carry into the next rollout), acting with
   ``iltk.rl.acting.ActorController``; the rewards come from the ``RewardSource``
   (``iltk.rl.rewards``), optionally scaled by the running std of the discounted return;
   a time-limit truncation bootstraps from V(final observation), an absorbing end (a
   source's ``absorbing``) from its held reward, a termination from 0; then GAE.
2. ``update``: ``n_epochs`` passes over the rollout in minibatches of ``batch_size``, each
   shuffled once by the run's generator, through the updater (``iltk.rl.updaters``) on
   ``iltk.rl.loss.ppo_loss``; SB3's target-KL rule stops before a step whose approximate
   KL exceeds 1.5 ``target_kl``; with the KL-penalty objective beta adapts after it.
   What is only logged (approximate KL, clip fraction, entropy, the KL) is measured once
   on the whole batch after the update.

What other algorithms add composes from outside, PPO never names them: a reward source
(sparse success, a saved reward, the live IRL reward), ``callbacks`` (``Callback``: once
before a fresh run, before and after each update, at each checkpoint; e.g.
``CriticWarmup`` freezes the actor for the first rollouts), ``aux_losses`` (terms added to the actor's loss, e.g. a pull towards
a BC policy), a learning rate of the critic's own.

The policy protocol (``ActorCritic``, and fine-tuning's ``FinetunePolicy`` and
``ResidualPolicy``): ``actor`` and ``critic`` modules on the normalized observation,
``log_std``, ``value(obs)``, ``actor_parameters()`` / ``critic_parameters()``,
``set_obs_stats(mean, var)`` and ``frozen_base`` (a policy acted on top of, or None).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from iltk.rl.acting import ActorController, flat_state
from iltk.rl.buffer import RolloutBuffer
from iltk.rl.loss import LossSettings, gaussian_entropy, gaussian_kl, gaussian_logp, update_beta
from iltk.rl.rewards import EnvReward, RewardSource
from iltk.rl.stats import RewardScaler, RunningMeanStd
from iltk.rl.updaters import NumpyUpdater, TorchUpdater
from iltk.rollout import Rollout
from iltk.training import Optimization


class Callback:
    """Hooks into PPO's iterations; ``metrics`` and ``outputs`` name the logged columns
    and the files in OUT it adds."""

    metrics: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    def on_train_start(self, ppo: PPO) -> None:
        """Once, before the first rollout of a fresh run (not on --resume): e.g. a warm
        start of the policy."""

    def on_update_start(self, ppo: PPO) -> None:
        """After a rollout is collected, before the update."""

    def on_update_end(self, ppo: PPO) -> dict:
        """After the update (``ppo.buffer`` still holds the rollout); returns logs."""
        return {}

    def on_checkpoint(self, out: Path) -> None:
        """When the run writes its checkpoints into ``out``."""

    def state_dict(self) -> dict | None:
        """What --resume needs of this callback (saved with PPO's own state); None: nothing."""
        return None

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""


class CriticWarmup(Callback):
    """The first ``rollouts`` updates train the critic alone, the actor frozen: the value
    of the policy PPO starts from is learned before it moves (fine-tuning)."""

    metrics = ("warmup",)

    def __init__(self, rollouts: int):
        self.rollouts = rollouts
        self.warming = False

    def on_update_start(self, ppo: PPO) -> None:
        self.warming = ppo.iterations < self.rollouts
        ppo.train_actor = not self.warming

    def on_update_end(self, ppo: PPO) -> dict:
        return {"warmup": float(self.warming)}


class PPO:
    """PPO on ``envs`` (a vector env of ``iltk.envs.make_vector_env``) for ``policy``.

    Args:
        cfg: a ``PPOConfig`` (the settings of `iltk ppo`): its ``ppo`` group, ``total_timesteps``
            (the learning-rate schedule's length) and ``seed``.
        keys: the observation keys PPO reads (flattened and concatenated).
        reward: where the rewards come from (default: the env's).
        callbacks, aux_losses: see the module docstring.
        critic_lr: the critic's learning rate (default: ``cfg.lr``).
        episode_seeds: the reset seeds the rollouts cycle through (default: ``seed + k``).
    """

    def __init__(
        self,
        cfg,
        envs,
        policy,
        *,
        keys: list[str],
        device: torch.device,
        reward: RewardSource | None = None,
        callbacks=(),
        aux_losses=(),
        critic_lr: float | None = None,
        episode_seeds=None,
    ):
        self.cfg, self.envs, self.policy, self.keys, self.device = cfg, envs, policy, keys, device
        self.settings = ps = cfg.ppo
        self.reward = reward if reward is not None else EnvReward()
        self.callbacks = list(callbacks)
        self.episode_seeds = episode_seeds
        N = ps.num_envs
        self.low = envs.single_action_space.low.astype(np.float32)
        self.high = envs.single_action_space.high.astype(np.float32)
        action_dim = len(self.low)
        self.state_dim = int(sum(np.prod(s.shape) for s in _spaces(envs, keys)))
        self.obs_dim = self.state_dim + (action_dim if policy.frozen_base is not None else 0)
        self.obs_rms = RunningMeanStd(self.obs_dim) if ps.normalize_obs else None
        self.scaler = RewardScaler(N, ps.gamma) if ps.normalize_reward else None
        iterations = -(-cfg.total_timesteps // ps.rollout_size)
        per_epoch = -(-ps.rollout_size // ps.batch_size)
        self.optim = Optimization(
            [
                {"params": policy.actor_parameters(), "lr": ps.lr},
                {"params": policy.critic_parameters(), "lr": critic_lr or ps.lr},
            ],
            lr=ps.lr,
            total_steps=iterations * ps.n_epochs * per_epoch,
            schedule=ps.lr_schedule,
            grad_clip=ps.max_grad_norm,
            device=device,
            eps=1e-5,
            amp=False,
        )
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        if ps.update_backend == "numpy":
            self.updater = NumpyUpdater(policy, self.optim, max_grad_norm=ps.max_grad_norm)
        else:
            self.updater = TorchUpdater(
                policy, self.optim, compile=ps.compile, aux_losses=aux_losses
            )
        self.env_steps = 0
        self.iterations = 0
        self.beta = ps.kl_beta
        self.train_actor = True
        self.buffer = RolloutBuffer(ps.n_steps, N, self.obs_dim, action_dim)
        self.rollout: Rollout | None = None
        self.controller: ActorController | None = None
        self.finished: list = []
        self.ep_len = np.zeros(N, np.int64)  # steps into each env's episode

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """What resumes the algorithm: the optimizer, counters, generator, statistics."""
        self.updater.save_to(self.optim.opt)
        return {
            **self.optim.state_dict(),
            "env_steps": self.env_steps,
            "iterations": self.iterations,
            "beta": self.beta,
            "generator": self.gen.get_state(),
            "obs_rms": self.obs_rms.state_dict() if self.obs_rms is not None else None,
            "ret_rms": self.scaler.state_dict() if self.scaler is not None else None,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
        }

    def load_state_dict(self, saved: dict) -> None:
        self.optim.load_state_dict(saved)
        if isinstance(self.updater, NumpyUpdater):
            self.updater.fast.load_from(self.optim.opt)
        gen = saved["generator"]
        self.gen.set_state(gen if self.device.type == "cuda" else gen.cpu())
        self.env_steps, self.iterations = saved["env_steps"], saved["iterations"]
        self.beta = saved["beta"]
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(saved["obs_rms"])
        if self.scaler is not None:
            self.scaler.load_state_dict(saved["ret_rms"])
        states = saved.get("callbacks") or [None] * len(self.callbacks)
        if len(states) != len(self.callbacks):
            raise ValueError(
                f"the saved state holds {len(states)} callbacks' states, this run has "
                f"{len(self.callbacks)}: a checkpoint of another command"
            )
        for cb, state in zip(self.callbacks, states):
            if state is not None:
                cb.load_state_dict(state)

    def sync_policy_stats(self) -> None:
        """Copy the running observation statistics into the policy (before it is saved or
        evaluated: a checkpoint acts as trained)."""
        if self.obs_rms is not None:
            self.policy.set_obs_stats(self.obs_rms.mean, self.obs_rms.var)

    # ---------------------------------------------------------------- collect
    def _start(self) -> None:
        # episodes continue the seed sequence after a resume, so no seed is used twice
        seed = self.cfg.seed + self.env_steps
        self.controller = ActorController(
            self.policy, self.obs_rms, self.low, self.high, seed, self.keys, self.settings.num_envs
        )
        self.rollout = Rollout(
            self.envs,
            self.controller,
            seed=seed,
            seeds=self.episode_seeds,
            record=False,
            on_episode=self.finished.append,
        )

    def collect(self) -> list:
        """One rollout into ``self.buffer`` (advantages and returns included); returns the
        episodes that finished during it."""
        if self.rollout is None:
            self._start()
        ps, buf, scaler, controller = self.settings, self.buffer, self.scaler, self.controller
        self.finished.clear()
        self.policy.eval()
        for t in range(ps.n_steps):
            tr = self.rollout.step()
            rewards = self.reward.rewards(
                tr, flat_state(tr.obs, self.keys), flat_state(tr.final_obs, self.keys)
            )
            if scaler is not None:
                rewards = scaler(rewards, tr.done)
            terminated = np.asarray(tr.terminated, bool) & tr.done
            truncated = tr.done & ~terminated  # by the time limit (or a command)
            final_values = np.zeros(ps.num_envs)
            if truncated.any():  # the MDP did not end: bootstrap from the final obs
                final_values = controller.values(tr.final_obs)
            self.ep_len += 1
            if terminated.any():
                ended = np.flatnonzero(terminated)
                final = flat_state(tr.final_obs, self.keys)[ended]
                held = self.reward.absorbing(tr, ended, final, self.ep_len[ended])
                if held is not None:  # an absorbing state: its held reward is its value
                    r = held.reward if scaler is None else scaler.scale(held.reward)
                    final_values[ended] = r * self._held_weight(held.steps, len(ended))
                    truncated, terminated = truncated | terminated, np.zeros_like(terminated)
            self.ep_len[tr.done] = 0
            buf.add(t, tr.control, rewards, terminated, truncated, final_values)
        buf.finish(controller.values(self.rollout.obs), ps.gamma, ps.gae_lambda)
        self.env_steps += ps.rollout_size
        return list(self.finished)

    def _held_weight(self, steps, n: int) -> np.ndarray:
        """sum_{k < steps} gamma^k: the value of a reward held ``steps`` more steps."""
        gamma = self.settings.gamma
        if steps is None:  # no horizon: held forever
            return np.full(n, 1.0 / (1.0 - gamma))
        if gamma == 1.0:
            return np.asarray(steps, np.float64)
        return (1.0 - gamma ** np.asarray(steps)) / (1.0 - gamma)

    # ----------------------------------------------------------------- update
    def update(self) -> dict:
        """The epochs on the collected rollout; returns the logged means."""
        batch = self.buffer.tensors(self.device)
        batch["old_log_std"] = self.policy.log_std.detach().clone()
        self.policy.train()
        logs, self.beta = ppo_update(
            self.policy,
            self.updater,
            batch,
            self.settings,
            self.beta,
            self.gen,
            train_actor=self.train_actor,
        )
        logs["lr"] = self.optim.lr
        return logs

    # -------------------------------------------------------------- iteration
    def iteration(self) -> tuple[dict, list]:
        """Collect, then update: the training row of this rollout and its finished episodes."""
        t0 = time.perf_counter()
        finished = self.collect()
        collect_s = time.perf_counter() - t0
        for cb in self.callbacks:
            cb.on_update_start(self)
        logs = self.update()
        update_s = time.perf_counter() - t0 - collect_s
        self.iterations += 1
        self.controller.refresh()
        logs.update(self.reward.logs())
        for cb in self.callbacks:
            logs.update(cb.on_update_end(self))
        elapsed = time.perf_counter() - t0
        logs.update(
            explained_var=self.buffer.explained_variance(),
            fps=self.settings.rollout_size / elapsed,
            collect_s=collect_s,  # the rollout: env steps and acting
            update_s=update_s,  # the epochs of minibatch updates
        )
        if finished:
            logs.update(
                ep_return=float(np.mean([e.episode_return for e in finished])),
                ep_length=float(np.mean([e.length for e in finished])),
                success=float(np.mean([e.success for e in finished])),
            )
        return logs, finished


def ppo_update(policy, updater, batch: dict, settings, beta: float, gen, *, train_actor=True):
    """The epochs of one rollout (``batch``: its flat tensors and ``old_log_std``, the log
    std it was sampled with) through ``updater``; returns the logged means and the new
    beta. Each epoch shuffles the batch once with ``gen`` and cuts it into minibatch
    views; what is only logged is measured once, on the whole batch, after the update."""
    ps = settings
    old_log_std = batch["old_log_std"]
    data = {k: v for k, v in batch.items() if k != "old_log_std"}
    n = data["obs"].shape[0]
    arrays = updater.prepare(data)
    loss = LossSettings.of(ps)
    beta_t = torch.tensor(float(beta), device=old_log_std.device)  # no recompile as it adapts
    kl_limit = 1.5 * ps.target_kl if ps.target_kl is not None else None
    pg_sum = v_sum = 0.0
    count = 0
    stop = False
    for _ in range(ps.n_epochs):
        perm = torch.randperm(n, generator=gen, device=gen.device)
        shuffled = updater.take(arrays, perm)
        for start in range(0, n, ps.batch_size):
            mb = {k: v[start : start + ps.batch_size] for k, v in shuffled.items()}
            out = updater.step(
                mb, old_log_std, beta_t, loss, train_actor=train_actor, kl_limit=kl_limit
            )
            if out is None:  # SB3's target-KL rule: stop before this minibatch's step
                stop = True
                break
            pg_sum, v_sum, count = pg_sum + out[0], v_sum + out[1], count + 1
        if stop:
            break
    updater.finish()
    logs = {"pg_loss": float(pg_sum) / max(count, 1), "v_loss": float(v_sum) / max(count, 1)}
    with torch.no_grad():  # the whole update, measured on the whole batch
        mean, log_std = policy.actor(data["obs"]), policy.log_std
        log_ratio = gaussian_logp(data["actions"], mean, log_std) - data["logp"]
        ratio = log_ratio.exp()
        logs["approx_kl"] = float(((ratio - 1) - log_ratio).mean())
        logs["clip_frac"] = float(((ratio - 1).abs() > ps.clip_range).float().mean())
        logs["kl"] = float(gaussian_kl(mean, log_std, data["mean"], old_log_std).mean())
        logs["entropy"] = float(gaussian_entropy(log_std))
    if ps.objective == "kl-penalty" and train_actor:
        beta = update_beta(beta, logs["kl"], ps.kl_target)
    logs.update(beta=beta, updates=count)
    return logs, beta


def _spaces(envs, keys):
    import gymnasium as gym

    space = envs.single_observation_space
    if isinstance(space, gym.spaces.Dict):
        return [space.spaces[k] for k in keys]
    return [space]
