"""PPO (Schulman et al. 2017) with GAE (Schulman et al. 2016), on the one control loop.

Each iteration collects ``n_steps`` steps in each of ``num_envs`` envs with
``iltk.rollout.Rollout`` (its state persists across iterations, so unfinished episodes
carry over), then updates the actor-critic for ``epochs`` passes in minibatches:

- GAE(gamma, lambda): delta_t = r_t + gamma V(s_{t+1}) (1 - terminated_t) - V(s_t),
  A_t = sum_l (gamma lambda)^l delta_{t+l} within the episode; returns R_t = A_t + V(s_t).
  At a time-limit truncation the episode did not end in the MDP: its last delta uses the
  value of the true final observation (``Transition.final_obs``), as SB3 does; CleanRL
  treats it as a termination (its #198, #457).
- clip: L = E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)], rho = pi(a|s) / pi_old(a|s).
- kl-penalty: L = E[rho A] - beta KL(pi || pi_old) (the lecture's adaptive-KL PPO); after
  each update (all epochs of a rollout) the KL is measured on the whole batch and beta is
  halved when it is below kl_target / 1.5, doubled when above 1.5 kl_target.
- plus an entropy bonus, the value loss (optionally clipped around the rollout's values),
  gradient-norm clipping, SB3's target-KL early stop, optional learning-rate annealing.

Observations are normalized with running statistics that the checkpoint keeps (the
policy's buffers); rewards are scaled by the running std of the discounted return (SB3's
VecNormalize). ``--reward DIR`` replaces the env's reward with a saved reward network
(``iltk.rewards``), r(s_t) or r(s_t, a_t); the env's return is still logged. Checkpoints,
logs and plots come from the training core.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from iltk.algos import ppo_numpy
from iltk.algos.configs import PPOConfig
from iltk.envs import make_vector_env
from iltk.evaluate import evaluate_policy
from iltk.policies import load_policy, make_policy, resolve_device
from iltk.policies.configs import ActorCriticConfig
from iltk.rollout import ControlOutput, Rollout
from iltk.training import Optimization, RunFolder, seed_everything

LOG_2PI = math.log(2 * math.pi)
EVAL_SEED = 1_000_000  # evaluation episodes never share a seed with training episodes


# ----------------------------------------------------------------------------- pieces
class RunningMeanStd:
    """Running mean and variance of batches (Chan et al.'s parallel update), float64."""

    def __init__(self, shape=()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        b_count = x.shape[0]
        if b_count == 1:  # one env: Welford's step (a third of the work of the general case)
            delta = x[0] - self.mean
            total = self.count + 1
            self.mean = self.mean + delta / total
            self.var = (self.var * self.count + delta**2 * self.count / total) / total
            self.count = total
            return
        b_mean, b_var = x.mean(0), x.var(0)
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


def scale_rewards(
    ret_rms: RunningMeanStd,
    discounted: np.ndarray,
    rewards: np.ndarray,
    done: np.ndarray,
    gamma: float,
) -> np.ndarray:
    """One step of reward normalization (SB3's VecNormalize): the running discounted
    return ``discounted`` (updated in place, zeroed where an episode ended) feeds
    ``ret_rms``; the rewards come back divided by its std and clipped to +-10."""
    discounted *= gamma
    discounted += rewards
    ret_rms.update(discounted)
    scaled = np.clip(rewards / np.sqrt(ret_rms.var + 1e-8), -10, 10)
    discounted[done] = 0.0
    return scaled


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    final_values: np.ndarray,
    last_values: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE advantages and returns of a (T, N) rollout.

    At step t, delta_t = r_t + gamma * V(next) - V(s_t) with V(next) = 0 where the episode
    terminated, V(final observation) (``final_values[t]``) where it was truncated by a time
    limit (the MDP goes on: bootstrap), ``values[t + 1]`` otherwise (``last_values`` after
    the last step). The sum A_t = sum_l (gamma lambda)^l delta_{t+l} stops where the
    episode ended, terminated or truncated.
    """
    steps = len(rewards)
    advantages = np.zeros(rewards.shape, np.float64)
    gae = np.zeros(rewards.shape[1:], np.float64)
    for t in reversed(range(steps)):
        next_values = last_values if t == steps - 1 else values[t + 1]
        next_values = np.where(truncated[t], final_values[t], next_values)
        next_values = np.where(terminated[t], 0.0, next_values)
        delta = rewards[t] + gamma * next_values - values[t]
        ended = np.logical_or(terminated[t], truncated[t])
        gae = delta + gamma * lam * np.where(ended, 0.0, gae)
        advantages[t] = gae
    return advantages, advantages + values


def gaussian_logp(actions, mean, log_std) -> torch.Tensor:
    """log N(actions; mean, exp(log_std)^2), summed over the action dims."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the action dimensions."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5
    return kl.sum(-1)


def update_beta(beta: float, kl: float, kl_target: float) -> float:
    """The adaptive-KL rule: halve beta when KL < d_targ / 1.5, double it when KL > 1.5 d_targ."""
    if kl < kl_target / 1.5:
        return beta / 2
    if kl > kl_target * 1.5:
        return beta * 2
    return beta


def flat_state(obs, keys: list[str]) -> np.ndarray:
    """The env's batched observation as one (N, S) array (dict observations: ``keys``)."""
    if isinstance(obs, dict):
        return np.concatenate([np.asarray(obs[k]).reshape(len(obs[k]), -1) for k in keys], 1)
    obs = np.asarray(obs)
    return obs.reshape(len(obs), -1)


def numpy_mlp(seq: torch.nn.Sequential):
    """A snapshot of an MLP's weights as a numpy function: on the CPU, one step's forward
    pass of PPO's small networks costs a few microseconds in numpy against ~100 in torch
    (per-operator dispatch), and collection runs it once per environment step."""
    if not isinstance(seq, torch.nn.Sequential):
        raise TypeError(f"numpy_mlp: {type(seq).__name__} is not an nn.Sequential")
    layers = []
    for module in seq:
        if isinstance(module, torch.nn.Linear):
            w = module.weight.detach().cpu().numpy().T.copy()
            layers.append(("linear", w, module.bias.detach().cpu().numpy().copy()))
        elif isinstance(module, torch.nn.Tanh):
            layers.append(("tanh", None, None))
        elif isinstance(module, torch.nn.ReLU):
            layers.append(("relu", None, None))
        else:
            raise TypeError(f"numpy_mlp: unsupported layer {module}")

    def forward(x: np.ndarray) -> np.ndarray:
        for kind, w, b in layers:
            if kind == "linear":
                x = x @ w + b
            elif kind == "tanh":
                x = np.tanh(x)
            else:
                x = np.maximum(x, 0)
        return x

    return forward


def torch_function(module: torch.nn.Module):
    """A module as a numpy function (what ``numpy_mlp`` cannot snapshot: a fine-tuned BC
    policy's actor, a critic behind a normalization layer)."""
    device = next(module.parameters(), torch.zeros(())).device

    @torch.no_grad()
    def forward(x: np.ndarray) -> np.ndarray:
        out = module(torch.as_tensor(np.asarray(x, np.float32), device=device))
        return out.detach().cpu().numpy()

    return forward


def snapshot(module: torch.nn.Module):
    try:
        return numpy_mlp(module)
    except TypeError:
        return torch_function(module)


class ActorController:
    """The control loop's controller while PPO collects: it samples from the Gaussian
    actor and reports, per step, the normalized observation, log-probability, value and
    mean that the update needs (fields of the ControlOutput). On the CPU it acts with a
    numpy snapshot of the weights, refreshed after every update (``refresh``)."""

    def __init__(self, policy, obs_rms, low, high, seed: int, keys, base_runner=None):
        self.policy, self.obs_rms, self.keys = policy, obs_rms, keys
        self.low, self.high = low, high
        # a residual policy: the frozen base acts first, in its own runner; PPO's
        # observation is (state, base action) and its action the residual on top
        self.base_runner = base_runner
        self.last_base: np.ndarray | None = None
        self.clip = policy.config.obs_clip
        self.rng = np.random.default_rng(seed)
        self.refresh()

    def refresh(self) -> None:
        """Take the policy's current weights (after an update)."""
        self.actor = snapshot(self.policy.actor)
        self.critic = snapshot(self.policy.critic)
        self.log_std = self.policy.log_std.detach().cpu().numpy().astype(np.float64)

    def normalize(self, state: np.ndarray) -> np.ndarray:
        if self.obs_rms is None:
            return state.astype(np.float32)
        z = (state - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def values(self, obs) -> np.ndarray:
        state = flat_state(obs, self.keys)
        if self.base_runner is not None:
            # bootstrapping at a truncation or a rollout's end: the base's action there is
            # taken as its last one (asking its runner would advance the base's state)
            state = np.concatenate([state, self.last_base], 1)
        return self.critic(self.normalize(state))[:, 0].astype(np.float64)

    def reset(self, env_ids):
        if self.base_runner is not None:
            self.base_runner.reset(env_ids)

    def act(self, obs, info, envs) -> ControlOutput:
        state = flat_state(obs, self.keys)
        base = None
        if self.base_runner is not None:
            base = self.last_base = self.base_runner.act(obs).astype(np.float64)
            state = np.concatenate([state, base], 1)
        if self.obs_rms is not None:
            self.obs_rms.update(state)
        norm = self.normalize(state)
        mean = self.actor(norm)
        noise = self.rng.standard_normal(mean.shape)
        action = (mean + np.exp(self.log_std) * noise).astype(np.float32)
        logp = (-0.5 * noise**2 - self.log_std - 0.5 * LOG_2PI).sum(-1)
        executed = action if base is None else (base + action).astype(np.float32)
        return ControlOutput(
            executed=np.clip(executed, self.low, self.high),
            label=action,
            fields={
                "norm_obs": norm,
                "logp": logp.astype(np.float32),
                "value": self.critic(norm)[:, 0].astype(np.float64),
                "mean": mean.astype(np.float32),
            },
        )


# ----------------------------------------------------------------------------- update
def minibatch_loss(
    policy,
    mb: dict,
    old_log_std: torch.Tensor,
    beta: torch.Tensor,
    *,
    objective: str,
    clip: float,
    clip_vf: float | None,
    vf_coef: float,
    normalize_advantage: bool,
    train_actor: bool,
    want_kl: bool,
):
    """PPO's loss on one minibatch: (loss, surrogate loss, value loss, approximate KL of
    the old to the new policy or None, the actor's mean). The loss is the clipped
    surrogate (or the surrogate minus beta * KL(new || old)) plus vf_coef times the
    squared error of the value (clipped to clip_vf from the rollout's values when set);
    the critic's term alone while the actor is frozen (``train_actor=False``)."""
    adv = mb["advantages"]
    if normalize_advantage and adv.shape[0] > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    mean = policy.actor(mb["obs"])
    log_std = policy.log_std
    log_ratio = gaussian_logp(mb["actions"], mean, log_std) - mb["logp"]
    ratio = log_ratio.exp()
    approx_kl = ((ratio - 1) - log_ratio).mean().detach() if want_kl else None
    if objective == "clip":
        surrogate = torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
        pg_loss = -surrogate.mean()
    else:
        kl = gaussian_kl(mean, log_std, mb["mean"], old_log_std)
        pg_loss = -(ratio * adv).mean() + beta * kl.mean()
    values = policy.value(mb["obs"])
    if clip_vf is not None:
        old = mb["values"]
        values = old + (values - old).clamp(-clip_vf, clip_vf)
    v_loss = (mb["returns"] - values).pow(2).mean()
    loss = pg_loss + vf_coef * v_loss if train_actor else vf_coef * v_loss
    return loss, pg_loss, v_loss, approx_kl, mean


_compiled_loss = None


def compiled_minibatch_loss():
    """``minibatch_loss`` through ``torch.compile`` (forward and backward as generated
    kernels), compiled on its first call for each shape and flag."""
    global _compiled_loss
    if _compiled_loss is None:
        _compiled_loss = torch.compile(minibatch_loss, dynamic=False)
    return _compiled_loss


def ppo_update(
    policy,
    optim: Optimization,
    batch: dict,
    cfg: PPOConfig,
    beta: float,
    gen,
    train_actor: bool = True,
    regularizer=None,
    fast=None,
):
    """The epochs of one rollout; returns the logged means and the new beta.
    ``train_actor=False`` trains the critic alone (fine-tuning's warm-up: the actor is
    frozen while the value of the policy it starts from is learned). ``regularizer(obs,
    mean, log_std)``: a loss added to the actor's (fine-tuning's pull towards the BC policy).

    The batch is shuffled once per epoch and cut into minibatch views; what is only
    logged (the approximate KL, the clip fraction, the entropy) is measured once, on the
    whole batch after the update, so each minibatch runs only what its step needs.
    ``fast``: a :class:`~iltk.algos.ppo_numpy.NumpyPPO` that takes the minibatch steps
    instead of autograd and the torch optimizer (the same shuffles, the same update).
    """
    n = batch["obs"].shape[0]
    old_log_std = batch["old_log_std"]
    keys = ("obs", "actions", "advantages", "returns", "logp", "mean", "values")
    pg_sum = v_sum = 0.0
    count = 0
    stop_early = False
    if fast is not None:
        if not train_actor:
            raise ValueError("the numpy update has no critic warm-up")
        arrays = {k: batch[k].numpy() for k in keys}
        old_ls = old_log_std.numpy()
        kl_stop = 1.5 * cfg.target_kl if cfg.target_kl is not None else None
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, generator=gen).numpy()
            shuffled = {k: v[perm] for k, v in arrays.items()}
            for start in range(0, n, cfg.batch_size):
                out = fast.step(
                    {k: v[start : start + cfg.batch_size] for k, v in shuffled.items()},
                    objective=cfg.objective,
                    clip=cfg.clip,
                    clip_vf=cfg.clip_vf,
                    vf_coef=cfg.vf_coef,
                    ent_coef=cfg.ent_coef,
                    normalize_advantage=cfg.normalize_advantage,
                    beta=beta,
                    old_log_std=old_ls,
                    lr=optim.advance(),
                    kl_stop=kl_stop,
                )
                if out is None:  # SB3's target-KL rule: stop before this minibatch's step
                    stop_early = True
                    break
                pg_sum, v_sum, count = pg_sum + out[0], v_sum + out[1], count + 1
            if stop_early:
                break
        fast.write_back()
    loss_fn = compiled_minibatch_loss() if getattr(cfg, "compile", False) else minibatch_loss
    beta_t = torch.tensor(float(beta), device=batch["obs"].device)  # no recompile as it adapts
    for _ in range(cfg.epochs if fast is None else 0):
        perm = torch.randperm(n, generator=gen, device=batch["obs"].device)
        shuffled = {k: batch[k][perm] for k in keys}
        for start in range(0, n, cfg.batch_size):
            mb = {k: v[start : start + cfg.batch_size] for k, v in shuffled.items()}
            loss, pg_loss, v_loss, approx_kl, mean = loss_fn(
                policy,
                mb,
                old_log_std,
                beta_t,
                objective=cfg.objective,
                clip=cfg.clip,
                clip_vf=cfg.clip_vf,
                vf_coef=cfg.vf_coef,
                normalize_advantage=cfg.normalize_advantage,
                train_actor=train_actor,
                want_kl=cfg.target_kl is not None,
            )
            # SB3's rule: stop before this minibatch's step
            if approx_kl is not None and float(approx_kl) > 1.5 * cfg.target_kl:
                stop_early = True
                break
            if regularizer is not None and train_actor:
                loss = loss + regularizer(mb["obs"], mean, policy.log_std)
            if cfg.ent_coef and train_actor:
                loss = loss - cfg.ent_coef * (policy.log_std + 0.5 * (1 + LOG_2PI)).sum()
            optim.step(loss)
            pg_sum, v_sum = pg_sum + pg_loss.detach(), v_sum + v_loss.detach()
            count += 1
        if stop_early:
            break
    logs = {"pg_loss": float(pg_sum) / max(count, 1), "v_loss": float(v_sum) / max(count, 1)}
    with torch.no_grad():  # the whole update, measured on the whole batch
        mean, log_std = policy.actor(batch["obs"]), policy.log_std
        log_ratio = gaussian_logp(batch["actions"], mean, log_std) - batch["logp"]
        ratio = log_ratio.exp()
        logs["approx_kl"] = float(((ratio - 1) - log_ratio).mean())
        logs["clip_frac"] = float(((ratio - 1).abs() > cfg.clip).float().mean())
        logs["kl"] = float(gaussian_kl(mean, log_std, batch["mean"], old_log_std).mean())
        logs["entropy"] = float((log_std + 0.5 * (1 + LOG_2PI)).sum())
    if cfg.objective == "kl-penalty" and train_actor:
        beta = update_beta(beta, logs["kl"], cfg.kl_target)
    logs.update(beta=beta, updates=count, lr=optim.lr)
    return logs, beta


# ------------------------------------------------------------------------------- run
METRICS = [
    "warmup",
    "bc_loss",
    "bc_weight",
    "kl_to_start",
    "ep_return",
    "ep_length",
    "success",
    "pg_loss",
    "v_loss",
    "entropy",
    "approx_kl",
    "kl",
    "clip_frac",
    "beta",
    "explained_var",
    "lr",
    "fps",
    "collect_s",
    "update_s",
    "learned_reward",
    "eval_return",
    "eval_success",
    "time_s",
]


def _cxx_compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")


def _check_task(envs: gym.vector.VectorEnv, task: str) -> None:
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"{task}: PPO here needs a continuous (Box) action space, got {space}")
    if not np.all(np.isfinite(space.low)) or not np.all(np.isfinite(space.high)):
        raise ValueError(f"{task}: the action space must be bounded, got {space}")


def _state_keys(envs) -> list[str]:
    space = envs.single_observation_space
    if isinstance(space, gym.spaces.Dict):
        keys = [k for k, s in space.spaces.items() if s.dtype != np.uint8]
        if not keys:
            raise ValueError("PPO here trains on state observations; this env gives images only")
        return keys
    if space.dtype == np.uint8:
        raise ValueError("PPO here trains on state observations; this env gives images only")
    return ["state"]


def _obs_dim(envs, keys) -> int:
    """Size of the flattened state observation (the keys' values concatenated)."""
    space = envs.single_observation_space
    if isinstance(space, gym.spaces.Dict):
        return sum(int(np.prod(space.spaces[k].shape)) for k in keys)
    return int(np.prod(space.shape))


def _learned_reward(cfg: PPOConfig, envs, keys):
    """The reward network of ``--reward`` (None: the env's reward), checked against the
    task's observation and action sizes."""
    if cfg.reward is None:
        return None
    from iltk.rewards import load_reward

    net = load_reward(cfg.reward)
    obs_dim = _obs_dim(envs, keys)
    action_dim = int(np.prod(envs.single_action_space.shape))
    if net.config.obs_dim != obs_dim or (
        not net.config.state_only and net.config.action_dim != action_dim
    ):
        raise ValueError(
            f"{cfg.reward}: the reward takes observations of {net.config.obs_dim} values"
            + ("" if net.config.state_only else f" and actions of {net.config.action_dim}")
            + f", but {cfg.task} has {obs_dim} and {action_dim}: a reward learned on another task?"
        )
    return net


def train_ppo(
    cfg: PPOConfig,
    game=None,
    policy=None,
    env_kwargs: dict | None = None,
    reward_fn=None,
    regularizer=None,
) -> dict:
    """Run PPO; returns the results dict (also in OUT/results.json).

    ``policy``: start from this policy instead of a fresh actor-critic (fine-tuning; it
    provides ``actor``, ``critic``, ``log_std``, ``value``, and ``actor_parameters()`` /
    ``critic_parameters()`` for the two learning rates, ``cfg.lr`` and ``cfg.critic_lr``);
    it is evaluated once before any update (the start of the curves), and the first
    ``cfg.critic_warmup`` rollouts train its critic alone. ``env_kwargs``: how the task's
    envs are made (e.g. the demonstrations' ``init_spread``). ``reward_fn(transition)``:
    the per-env rewards to train on instead of the env's (e.g. sparse success).
    ``regularizer``: an object with ``loss(obs, mean, log_std)`` added to the actor's loss,
    ``start_rollout(iteration)`` before each update and ``logs()`` after it.

    ``game``: the reward player of adversarial IRL (``iltk.algos.irl.deep``), or None. It
    gives ``env_kwargs`` (how the envs are made), ``horizon`` (the episodes' time limit, or
    None; an episode that ends earlier is its final state held to it, ``hold(states,
    steps)`` is told of each), ``outputs`` (its files in OUT), ``episode_seeds`` (the
    reset seeds the rollouts cycle through, or None), ``compared(episode_indices) ->
    mask`` (the episodes whose states the reward player compares), ``prepare(state_dim,
    action_dim)`` (called once the task is checked; returns the live reward network PPO
    trains on), ``update(states, actions) -> logs`` after each PPO update with the
    compared steps' raw states and executed actions, and ``save(out)`` at every
    checkpoint. PPO's ``best/`` is then not chosen by the env's reward (the learner never
    sees it): only ``last/`` is written.
    """
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.compile and device.type == "cpu" and not _cxx_compiler():
        raise ValueError(
            "--compile: torch.compile needs a C++ compiler on the CPU (g++ or clang++, or"
            " set CXX); install one or run without --compile"
        )
    if cfg.update_backend == "numpy":
        why = ppo_numpy.why_not(cfg, device, policy, regularizer)
        if why:
            raise ValueError(
                f"--update-backend numpy cannot run this run's updates: {why}; use"
                " --update-backend auto (or torch)"
            )
    # the task is checked before the run folder is touched
    env_kwargs = game.env_kwargs if game is not None else dict(env_kwargs or {})
    initial = policy
    envs = make_vector_env(cfg.task, cfg.num_envs, asynchronous=cfg.async_envs, **env_kwargs)
    try:
        _check_task(envs, cfg.task)
        keys = _state_keys(envs)
        if game is not None:
            action_dim = int(np.prod(envs.single_action_space.shape))
            learned = game.prepare(_obs_dim(envs, keys), action_dim)
        else:
            learned = _learned_reward(cfg, envs, keys)
        run = RunFolder(
            cfg.out,
            METRICS + (list(game.metrics) if game is not None else []),
            resume=cfg.resume,
            overwrite=cfg.overwrite,
            outputs=RunFolder.OUTPUTS + (tuple(game.outputs) if game is not None else ()),
        )
    except BaseException:
        envs.close()
        raise
    seed_everything(cfg.seed)
    eval_envs = None
    try:
        state_dim = _obs_dim(envs, keys)
        low = envs.single_action_space.low.astype(np.float32)
        high = envs.single_action_space.high.astype(np.float32)
        resume_from = run.resume_point()
        if resume_from:
            policy = load_policy(resume_from, device)
        elif initial is not None:
            policy = initial.to(device)
        else:
            policy = make_policy(
                "actor-critic",
                ActorCriticConfig(
                    state_dim=state_dim,
                    action_dim=len(low),
                    lowdim_keys=keys,
                    action_low=low.tolist(),
                    action_high=high.tolist(),
                    hidden=list(cfg.hidden),
                    activation=cfg.activation,
                    log_std_init=cfg.log_std_init,
                ),
            ).to(device)
        iterations = math.ceil(cfg.steps / cfg.rollout_size)
        per_epoch = math.ceil(cfg.rollout_size / cfg.batch_size)
        params = (
            [
                {"params": policy.actor_parameters(), "lr": cfg.lr},
                {"params": policy.critic_parameters(), "lr": getattr(cfg, "critic_lr", cfg.lr)},
            ]
            if hasattr(policy, "actor_parameters")
            else policy.parameters()
        )
        optim = Optimization(
            params,
            lr=cfg.lr,
            total_steps=iterations * cfg.epochs * per_epoch,
            schedule=cfg.lr_schedule,
            grad_clip=cfg.max_grad_norm,
            device=device,
            eps=1e-5,
            amp=False,
        )
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        ppo_dim = getattr(policy, "ppo_obs_dim", state_dim)  # a residual's: (state, base action)
        obs_rms = RunningMeanStd(ppo_dim) if cfg.normalize_obs else None
        ret_rms = RunningMeanStd() if cfg.normalize_reward else None
        state = {
            "env_steps": 0,
            "iterations": 0,
            "beta": cfg.kl_beta,
            "history": [],
            "best_score": None,
        }
        if resume_from:
            saved = run.load_train_state(device)
            optim.load_state_dict(saved)
            gen.set_state(saved["generator"] if device.type == "cuda" else saved["generator"].cpu())
            for key in state:
                state[key] = saved.get(key, state[key])
            if obs_rms is not None:
                obs_rms.load_state_dict(saved["obs_rms"])
            if ret_rms is not None:
                ret_rms.load_state_dict(saved["ret_rms"])
        fast = None  # the numpy update, where it covers the run (ppo_numpy.py)
        if cfg.update_backend != "torch" and not ppo_numpy.why_not(
            cfg, device, policy, regularizer
        ):
            fast = ppo_numpy.NumpyPPO(policy, lr=cfg.lr, eps=1e-5, max_grad_norm=cfg.max_grad_norm)
            fast.load_from(optim.opt)  # a resumed run's Adam moments
        run.write_config(
            {**dataclasses.asdict(cfg), "policy_config": dataclasses.asdict(policy.config)}
        )
        run.open_logs(state["env_steps"])

        base_runner = None
        if policy.kind == "residual":
            from iltk.policies.runners import PolicyRunner

            base_runner = PolicyRunner(policy.base, cfg.num_envs)
        controller = ActorController(
            policy, obs_rms, low, high, cfg.seed + state["env_steps"], keys, base_runner
        )
        finished: list = []
        # episodes continue the seed sequence after a resume, so no seed is used twice
        rollout = Rollout(
            envs,
            controller,
            seed=cfg.seed + state["env_steps"],
            seeds=game.episode_seeds if game is not None else None,
            record=False,
            on_episode=finished.append,
        )
        T, N = cfg.n_steps, cfg.num_envs
        buf = {
            "obs": np.zeros((T, N, ppo_dim), np.float32),
            "actions": np.zeros((T, N, len(low)), np.float32),
            "mean": np.zeros((T, N, len(low)), np.float32),
            "logp": np.zeros((T, N), np.float32),
            "values": np.zeros((T, N), np.float64),
            "rewards": np.zeros((T, N), np.float64),
            "terminated": np.zeros((T, N), bool),
            "truncated": np.zeros((T, N), bool),
            "final_values": np.zeros((T, N), np.float64),
        }
        if game is not None:  # what the reward player learns from
            buf["states"] = np.zeros((T, N, state_dim), np.float32)
            buf["executed"] = np.zeros((T, N, len(low)), np.float32)
            buf["compared"] = np.zeros((T, N), bool)
        discounted = np.zeros(N)  # the return the reward scale is estimated from
        ep_len = np.zeros(N, np.int64)  # steps into each env's episode (IRL's held states)

        def sync_policy_stats():
            if obs_rms is not None:
                policy.set_obs_stats(obs_rms.mean, obs_rms.var)

        def checkpoint(score):
            sync_policy_stats()
            extra = {"task": cfg.task, "env_kwargs": env_kwargs, "step": state["env_steps"]}
            if game is not None:
                game.save(cfg.out)
            better = score is not None and (
                state["best_score"] is None or score >= state["best_score"]
            )
            if better:
                state["best_score"] = score
                run.save(policy, "best", {**extra, "score": score})
            if fast is not None:  # its Adam moments, in torch's layout
                fast.save_to(optim.opt)
            train_state = {
                **optim.state_dict(),
                **state,
                "generator": gen.get_state(),
                "obs_rms": obs_rms.state_dict() if obs_rms is not None else None,
                "ret_rms": ret_rms.state_dict() if ret_rms is not None else None,
            }
            run.save(policy, "last", extra, train_state)

        def evaluate() -> dict:
            nonlocal eval_envs
            sync_policy_stats()
            if eval_envs is None:
                eval_envs = make_vector_env(cfg.task, 1, asynchronous=False, **env_kwargs)
            res = evaluate_policy(
                policy, cfg.task, cfg.eval_episodes, seed=EVAL_SEED, envs=eval_envs
            )
            return {"eval_return": res.mean_return, "eval_success": res.success_rate}

        bar = tqdm(
            total=cfg.steps,
            initial=min(state["env_steps"], cfg.steps),
            unit="step",
            desc=f"ppo {cfg.task}",
            disable=not cfg.progress,
        )
        t_start = time.perf_counter()
        n_before = len(state["history"])
        last_eval = state["env_steps"]
        last_row: dict = {}
        with run.disk_guard():
            if initial is not None and not resume_from and cfg.eval_episodes:
                ev = evaluate()  # where fine-tuning starts: step 0 of the curves
                state["history"].append({"step": 0, "eval": True, "start": True, **ev})
                run.log("eval", 0, {**ev, "time_s": 0.0})
                last_row.update(ev)
                state["start"] = ev
            while state["env_steps"] < cfg.steps:
                t0 = time.perf_counter()
                finished.clear()
                learned_sum = 0.0
                policy.eval()
                for t in range(T):
                    tr = rollout.step()
                    fields = tr.control.fields
                    buf["obs"][t] = fields["norm_obs"]
                    buf["actions"][t] = tr.control.label
                    buf["mean"][t] = fields["mean"]
                    buf["logp"][t] = fields["logp"]
                    buf["values"][t] = fields["value"]
                    reward = (
                        np.asarray(tr.rewards, np.float64) if reward_fn is None else reward_fn(tr)
                    )
                    if learned is not None:  # r(s_t) or r(s_t, a_t) of the learned reward
                        states = flat_state(tr.obs, keys)
                        reward = learned.rewards(
                            states, None if learned.config.state_only else tr.control.executed
                        )
                        if game is not None:
                            buf["states"][t], buf["executed"][t] = states, tr.control.executed
                            buf["compared"][t] = game.compared(tr.episode_index)
                        learned_sum += float(reward.mean())
                    if ret_rms is not None:
                        reward = scale_rewards(ret_rms, discounted, reward, tr.done, cfg.gamma)
                    terminated = np.asarray(tr.terminated, bool) & tr.done
                    truncated = tr.done & ~terminated  # by the time limit (or a command)
                    buf["final_values"][t] = 0.0
                    if truncated.any():  # the MDP did not end: bootstrap from the final obs
                        buf["final_values"][t] = controller.values(tr.final_obs)
                    ep_len += 1
                    if game is not None and terminated.any():
                        # an ended episode is its final state held to the horizon, as the
                        # demonstrations are: its value is that state's learned reward for
                        # the remaining steps, so ending neither pays nor costs in itself
                        ended = np.flatnonzero(terminated)
                        final = flat_state(tr.final_obs, keys)[ended]
                        held = game.horizon - ep_len[ended] if game.horizon else None
                        r_final = learned.rewards(
                            final,
                            None if learned.config.state_only else np.zeros((len(ended), len(low))),
                        )
                        if ret_rms is not None:
                            r_final = np.clip(r_final / np.sqrt(ret_rms.var + 1e-8), -10, 10)
                        if held is None:  # no horizon: held forever
                            weight = np.full(len(ended), 1.0 / (1.0 - cfg.gamma))
                        elif cfg.gamma == 1.0:
                            weight = held.astype(np.float64)
                        else:
                            weight = (1.0 - cfg.gamma**held) / (1.0 - cfg.gamma)
                        buf["final_values"][t, ended] = r_final * weight
                        truncated, terminated = truncated | terminated, np.zeros_like(terminated)
                        if held is not None:
                            held = np.where(game.compared(tr.episode_index[ended]), held, 0)
                        game.hold(final, held)
                    ep_len[tr.done] = 0
                    buf["rewards"][t] = reward
                    buf["terminated"][t], buf["truncated"][t] = terminated, truncated
                last_values = controller.values(rollout.obs)
                advantages, returns = compute_gae(
                    buf["rewards"],
                    buf["values"],
                    buf["terminated"],
                    buf["truncated"],
                    buf["final_values"],
                    last_values,
                    cfg.gamma,
                    cfg.gae_lambda,
                )
                state["env_steps"] += T * N
                collect_s = time.perf_counter() - t0

                def flat(x):
                    return torch.as_tensor(
                        np.asarray(x, np.float32).reshape(T * N, *x.shape[2:]), device=device
                    )

                batch = {k: flat(buf[k]) for k in ("obs", "actions", "mean", "logp", "values")}
                batch["advantages"], batch["returns"] = flat(advantages), flat(returns)
                batch["old_log_std"] = policy.log_std.detach().clone()
                policy.train()
                warming = state["iterations"] < getattr(cfg, "critic_warmup", 0)
                if regularizer is not None:
                    regularizer.start_rollout(state["iterations"])
                logs, state["beta"] = ppo_update(
                    policy,
                    optim,
                    batch,
                    cfg,
                    state["beta"],
                    gen,
                    train_actor=not warming,
                    regularizer=regularizer.loss if regularizer is not None else None,
                    fast=fast,
                )
                if regularizer is not None:
                    logs.update(regularizer.logs())
                update_s = time.perf_counter() - t0 - collect_s
                state["iterations"] += 1
                logs["warmup"] = float(warming)
                controller.refresh()
                if game is not None:  # the reward player's move, on this rollout's states
                    mask = buf["compared"].reshape(T * N)
                    logs.update(
                        game.update(
                            buf["states"].reshape(T * N, -1)[mask],
                            buf["executed"].reshape(T * N, -1)[mask],
                        )
                    )
                var_returns = returns.var()
                row = {
                    **logs,
                    "explained_var": float(1 - (returns - buf["values"]).var() / var_returns)
                    if var_returns > 0
                    else float("nan"),
                    "fps": T * N / (time.perf_counter() - t0),
                    "learned_reward": learned_sum / T if learned is not None else None,
                    "time_s": time.perf_counter() - t_start,
                    "collect_s": collect_s,  # the rollout: env steps and acting
                    "update_s": update_s,  # the epochs of minibatch updates
                }
                if finished:
                    row.update(
                        ep_return=float(np.mean([e.episode_return for e in finished])),
                        ep_length=float(np.mean([e.length for e in finished])),
                        success=float(np.mean([e.success for e in finished])),
                    )
                last_row.update({k: v for k, v in row.items() if k.startswith("ep_")})
                state["history"].append({"step": state["env_steps"], **row})
                run.log("train", state["env_steps"], row)
                bar.update(min(T * N, cfg.steps - bar.n))
                bar.set_postfix(
                    fps=f"{row['fps']:.0f}",
                    ret="-" if "ep_return" not in last_row else f"{last_row['ep_return']:.1f}",
                )
                due = cfg.eval_every and state["env_steps"] - last_eval >= cfg.eval_every
                if (due or state["env_steps"] >= cfg.steps) and cfg.eval_episodes:
                    last_eval = state["env_steps"]
                    ev = evaluate()
                    state["history"].append({"step": state["env_steps"], "eval": True, **ev})
                    run.log("eval", state["env_steps"], {**ev, "time_s": row["time_s"]})
                    last_row.update(ev)
                    # IRL's learner never sees the env's reward: no best/ chosen by it
                    checkpoint(
                        None if game is not None else ev["eval_success"] * 1e6 + ev["eval_return"]
                    )
                elif due or state["env_steps"] >= cfg.steps:
                    checkpoint(None)
        bar.close()
    finally:
        run.close()
        envs.close()
        if eval_envs is not None:
            eval_envs.close()
    plots = [p for p in _plots(run, state["history"]) if p is not None]
    elapsed = time.perf_counter() - t_start
    results = {
        "task": cfg.task,
        "env_steps": state["env_steps"],
        "final": {k: last_row.get(k) for k in ("ep_return", "eval_return", "eval_success")},
        "start": state.get("start"),  # the starting policy's evaluation (fine-tuning)
        "train_time_s": elapsed,
        # where the time went (this call): collecting rollouts, and PPO's updates
        "collect_s": sum(h.get("collect_s", 0.0) for h in state["history"][n_before:]),
        "update_s": sum(h.get("update_s", 0.0) for h in state["history"][n_before:]),
        "plots": [str(p) for p in plots],
        "device": str(device),
    }
    run.write_results(results)
    return results


def _plots(run: RunFolder, history: list[dict]) -> list[Path | None]:
    train = [r for r in history if not r.get("eval") and "ep_return" in r]
    evals = [r for r in history if r.get("eval")]
    # fine-tuning: where the starting policy was evaluated, and where the actor began to move
    marks = {"start policy": 0} if any(r.get("start") for r in history) else None
    title = "fine-tuning" if marks else "PPO"
    warm = [r["step"] for r in history if r.get("warmup") == 1.0]
    if marks and warm:
        marks["critic warm-up ends"] = max(warm)
    return [
        run.plot(
            "return",
            {
                "training episodes": ([r["step"] for r in train], [r["ep_return"] for r in train]),
                "evaluation (mean action)": (
                    [r["step"] for r in evals],
                    [r["eval_return"] for r in evals],
                ),
            },
            xlabel="environment steps",
            ylabel="episode return",
            title=f"{title} return",
            marks=marks,
        ),
        run.plot(
            "success",
            {
                "training episodes": ([r["step"] for r in train], [r["success"] for r in train]),
                "evaluation": ([r["step"] for r in evals], [r["eval_success"] for r in evals]),
            },
            xlabel="environment steps",
            ylabel="success rate",
            title=f"{title} success",
            ylim=(-0.02, 1.02),
            marks=marks,
        ),
    ]
