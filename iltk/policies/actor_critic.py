"""``actor-critic``: PPO's policy, a diagonal-Gaussian actor and a value critic.

Two separate MLPs over the normalized observation (SB3's MlpPolicy: 64-64 tanh, no shared
layers, orthogonal initialization with gains sqrt(2), 0.01 for the action mean and 1 for
the value), a state-independent learned log std. The observation normalization (running
mean and variance, clipped to +-``obs_clip``, as SB3's VecNormalize) lives in buffers, so a
checkpoint acts exactly as it was trained wherever it is loaded (``iltk eval``, ``iltk
replay --policy``, fine-tuning): CleanRL's hub checkpoints do not save it and score 3.8
instead of about 2000 on Hopper (CleanRL #425, #532).

Acting (``predict``) returns the mean action; the runner clips it to the action bounds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from iltk.policies.base import Policy
from iltk.policies.configs import ActorCriticConfig
from iltk.policies.nets import mlp


def _orthogonal(module: nn.Module, gain: float) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)


class ActorCritic(Policy):
    kind = "step"

    def __init__(self, config: ActorCriticConfig):
        super().__init__(config)
        act = nn.Tanh if config.activation == "tanh" else nn.ReLU
        s, a = config.state_dim, config.action_dim
        self.actor = mlp(s, config.hidden, a, act=act)
        self.critic = mlp(s, config.hidden, 1, act=act)
        _orthogonal(self.actor, math.sqrt(2))
        _orthogonal(self.critic, math.sqrt(2))
        _orthogonal(self.actor[-1], 0.01)
        _orthogonal(self.critic[-1], 1.0)
        self.log_std = nn.Parameter(torch.full((a,), float(config.log_std_init)))
        # observation normalization: running statistics, updated by the trainer
        self.register_buffer("obs_mean", torch.zeros(s))
        self.register_buffer("obs_var", torch.ones(s))
        self.register_buffer("obs_normalized", torch.zeros((), dtype=torch.bool))

    # ---------------------------------------------------------------- pieces
    def set_obs_stats(self, mean: np.ndarray | None, var: np.ndarray | None) -> None:
        """Use these running statistics to normalize observations (None: none)."""
        if mean is None:
            self.obs_normalized.fill_(False)
            return
        self.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.obs_var.copy_(torch.as_tensor(var, dtype=torch.float32))
        self.obs_normalized.fill_(True)

    def normalize(self, state: torch.Tensor) -> torch.Tensor:
        if not bool(self.obs_normalized):
            return state
        z = (state - self.obs_mean) / torch.sqrt(self.obs_var + 1e-8)
        return z.clamp(-self.config.obs_clip, self.config.obs_clip)

    def distribution(self, norm_obs: torch.Tensor) -> torch.distributions.Normal:
        """The action distribution at normalized observations."""
        mean = self.actor(norm_obs)
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean))

    def value(self, norm_obs: torch.Tensor) -> torch.Tensor:
        """V at normalized observations, shape (B,)."""
        return self.critic(norm_obs).squeeze(-1)

    # what PPO reads (iltk.rl.ppo's policy protocol)
    frozen_base = None
    """A policy this one acts on top of (a residual's base); None: it acts alone."""

    def actor_parameters(self) -> list[nn.Parameter]:
        return [*self.actor.parameters(), self.log_std]

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters())

    # -------------------------------------------------------- the contract
    def loss(self, batch):
        """Behaviour cloning of the actor (Gaussian negative log-likelihood): what a BC
        regularizer or a warm start uses; PPO's own loss is ``iltk.rl.loss.ppo_loss``."""
        norm = self.normalize(batch["obs"]["state"])
        nll = -self.distribution(norm).log_prob(batch["actions"]).sum(-1)
        w = batch.get("weights")
        loss = (nll * w).sum() / w.sum().clamp_min(1e-8) if w is not None else nll.mean()
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def predict(self, obs):
        return self.actor(self.normalize(obs["state"]))
