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
from iltk.policies.configs import FinetuneConfig, ResidualConfig, build_config
from iltk.policies.nets import mlp


def on_base(name: str, base: Policy, base_name: str, **settings) -> Policy:
    """A ``name`` policy (finetune, residual) built on ``base``, its weights copied; made
    through the registry, which names the class for saving."""
    c = base.config
    values = dict(
        state_dim=c.state_dim,
        action_dim=c.action_dim,
        lowdim_keys=list(c.lowdim_keys),
        action_low=list(c.action_low),
        action_high=list(c.action_high),
        base=base_name,
        base_config=dataclasses.asdict(c),
        **settings,
    )
    policy = make_policy(name, build_config(name, values))
    policy.base.load_state_dict(base.state_dict())
    return policy


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

    frozen_base = None  # the base is the actor itself, trained

    @classmethod
    def from_base(cls, base: Policy, base_name: str, **settings) -> FinetunePolicy:
        """A fine-tune policy that starts as ``base`` (its weights copied)."""
        return on_base("finetune", base, base_name, **settings)

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


class ResidualPolicy(Policy):
    """A frozen base policy of any kind (step, recurrent, chunked, temporal ensembling
    included) and a per-step Gaussian residual on top: the residual actor-critic reads
    the state and the base's action, and its mean is added to that action. The last layer
    of the residual actor starts at zero, so the policy starts as the base exactly.

    The base's per-episode state (RNN hidden state, action queue, ensembling buffer) lives
    in its own runner (``PolicyRunner`` gives a residual policy one), so fine-tuning does not
    change how the base acts: chunks are predicted, executed and ensembled as its config
    says."""

    kind = "residual"

    def __init__(self, config: ResidualConfig):
        super().__init__(config)
        from iltk.policies.actor_critic import ActorCritic
        from iltk.policies.configs import ActorCriticConfig

        self.base = make_policy(config.base, build_config(config.base, dict(config.base_config)))
        self.base.requires_grad_(False)
        a = config.action_dim
        self.residual = ActorCritic(
            ActorCriticConfig(
                state_dim=config.state_dim + a,
                action_dim=a,
                hidden=list(config.hidden),
                log_std_init=config.log_std_init,
                obs_clip=config.obs_clip,
            )
        )
        nn.init.zeros_(self.residual.actor[-1].weight)
        nn.init.zeros_(self.residual.actor[-1].bias)

    @property
    def actor(self) -> nn.Module:  # what PPO's update and collection read
        return self.residual.actor

    @property
    def critic(self) -> nn.Module:
        return self.residual.critic

    @classmethod
    def from_base(cls, base: Policy, base_name: str, **settings) -> ResidualPolicy:
        """A residual policy on ``base`` (its weights copied), acting as it at the start."""
        return on_base("residual", base, base_name, **settings)

    @property
    def frozen_base(self) -> Policy:
        """PPO acts on top of the base: its observation is (state, base action)."""
        return self.base

    @property
    def log_std(self) -> torch.Tensor:
        return self.residual.log_std.clamp(self.config.min_log_std, self.config.max_log_std)

    def actor_parameters(self) -> list[nn.Parameter]:
        return [*self.residual.actor.parameters(), self.residual.log_std]

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.residual.critic.parameters())

    def set_obs_stats(self, mean, var) -> None:
        self.residual.set_obs_stats(mean, var)

    def value(self, norm_obs: torch.Tensor) -> torch.Tensor:
        return self.residual.value(norm_obs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.base.eval()  # frozen: no dropout, no batch statistics, whatever the mode
        return self

    @torch.no_grad()
    def act_on(self, state: torch.Tensor, base_action: torch.Tensor) -> torch.Tensor:
        """The action: the base's plus the residual's mean."""
        x = self.residual.normalize(torch.cat([state, base_action], -1))
        return base_action + self.residual.actor(x)

    def loss(self, batch):
        raise NotImplementedError("a residual policy is trained with PPO (iltk finetune)")
