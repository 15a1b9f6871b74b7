"""``finetune``: a behaviour-cloned policy as the actor of PPO (``iltk finetune``).

The base policy (a registered step policy, ``bc``) is kept whole, its normalization
included: its deterministic action is the mean of PPO's Gaussian (a GMM head gives its
most likely component's mean), a state-independent log std is learned within
[``min_log_std``, ``max_log_std``] (a deterministic head gets exploration without
collapsing to zero or growing into noise), and a fresh critic reads the base's normalized
state. PPO's own running normalization is off for it: the base was trained with the
dataset's statistics and its weights mean nothing under others.

It exposes what ``iltk.algos.ppo`` reads from an actor-critic (``actor``, ``critic``,
``log_std``, ``value``), so the PPO update is the same code; and it is an ordinary
checkpoint: ``predict`` is the mean action, so `iltk eval`, `iltk replay --policy` and
`iltk correct` act with it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from iltk.policies.base import Policy, make_policy
from iltk.policies.configs import FinetuneConfig, build_config
from iltk.policies.nets import mlp


class BaseMean(nn.Module):
    """The base policy's deterministic action (real units) at raw state vectors."""

    def __init__(self, base: Policy):
        super().__init__()
        self._base = (base,)  # a reference: the fine-tune policy owns the module

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        base = self._base[0]
        h = base.trunk(base.encoder({"state": state}))
        return base.normalizer.unactions(base.head.act(h, deterministic=True))


class NormalizedState(nn.Module):
    """The base's state normalization, as the critic's first layer."""

    def __init__(self, base: Policy):
        super().__init__()
        self._base = (base,)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self._base[0].normalizer.state(state)


class FinetunePolicy(Policy):
    kind = "step"

    def __init__(self, config: FinetuneConfig):
        super().__init__(config)
        base_config = build_config(config.base, dict(config.base_config))
        self.base = make_policy(config.base, base_config)
        if self.base.kind != "step" or not hasattr(self.base, "trunk"):
            raise ValueError(
                f"finetune starts from an MLP step policy (bc); {config.base} is not one"
            )
        self.actor = BaseMean(self.base)
        self.critic = nn.Sequential(
            NormalizedState(self.base), mlp(config.state_dim, config.critic_hidden, 1, act=nn.Tanh)
        )
        last = self.critic[1][-1]
        nn.init.orthogonal_(last.weight, 1.0)
        nn.init.zeros_(last.bias)
        self.raw_log_std = nn.Parameter(torch.full((config.action_dim,), config.log_std_init))

    @classmethod
    def from_base(cls, base: Policy, base_name: str, **settings) -> FinetunePolicy:
        """A fine-tune policy that starts as ``base`` (its weights copied)."""
        c = base.config
        config = FinetuneConfig(
            state_dim=c.state_dim,
            action_dim=c.action_dim,
            lowdim_keys=list(c.lowdim_keys),
            action_low=list(c.action_low),
            action_high=list(c.action_high),
            base=base_name,
            base_config=dataclasses.asdict(c),
            **settings,
        )
        policy = make_policy("finetune", config)  # through the registry: it names the class
        policy.base.load_state_dict(base.state_dict())
        return policy

    @property
    def log_std(self) -> torch.Tensor:
        return self.raw_log_std.clamp(self.config.min_log_std, self.config.max_log_std)

    def actor_parameters(self) -> list[nn.Parameter]:
        return [*self.base.parameters(), self.raw_log_std]

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters())

    def value(self, state: torch.Tensor) -> torch.Tensor:
        return self.critic(state).squeeze(-1)

    def loss(self, batch):
        """The base's behaviour-cloning loss (the regularizer on demonstrations)."""
        return self.base.loss(batch)

    @torch.no_grad()
    def predict(self, obs):
        return self.actor(obs["state"])
