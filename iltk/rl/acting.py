"""How PPO acts while it collects: the Gaussian actor on the control loop.

On the CPU a 64-unit MLP's forward pass costs a few microseconds in numpy against ~100 in
torch (per-operator dispatch at batch 1), and collection runs it once per environment
step, so the controller acts with a numpy snapshot of the actor and critic, refreshed
after every update.
"""

from __future__ import annotations

import numpy as np
import torch

from iltk.rl.loss import LOG_2PI
from iltk.rollout import ControlOutput


def flat_state(obs, keys: list[str]) -> np.ndarray:
    """The env's batched observation as one (N, S) array (dict observations: ``keys``)."""
    if isinstance(obs, dict):
        return np.concatenate([np.asarray(obs[k]).reshape(len(obs[k]), -1) for k in keys], 1)
    obs = np.asarray(obs)
    return obs.reshape(len(obs), -1)


def numpy_mlp(seq: torch.nn.Sequential):
    """A snapshot of an MLP's weights as a numpy function (TypeError when ``seq`` is not
    a plain Linear / Tanh / ReLU stack)."""
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
    mean that the update needs (fields of the ControlOutput).

    A policy with a ``frozen_base`` (a residual) acts on top of it: the base acts first in
    its own runner, PPO's observation is (state, base action) and its action the residual
    added to the base's."""

    def __init__(self, policy, obs_rms, low, high, seed: int, keys: list[str], num_envs: int):
        self.policy, self.obs_rms, self.keys = policy, obs_rms, keys
        self.low, self.high = low, high
        self.base_runner = None
        if policy.frozen_base is not None:
            from iltk.policies.runners import PolicyRunner

            self.base_runner = PolicyRunner(policy.frozen_base, num_envs)
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
