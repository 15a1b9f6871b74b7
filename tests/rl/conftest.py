"""Shared pieces of the RL tests: a small actor-critic and a rollout batch for it."""

import pytest
import torch

from iltk.policies import make_policy
from iltk.policies.configs import ActorCriticConfig
from iltk.rl.loss import gaussian_logp


@pytest.fixture
def small_policy():
    """A 16-16 actor-critic on 5 observations and 2 actions (``activation``, ``seed``)."""

    def make(activation="tanh", seed=0):
        torch.manual_seed(seed)
        config = ActorCriticConfig(
            state_dim=5,
            action_dim=2,
            lowdim_keys=["state"],
            action_low=[-1.0] * 2,
            action_high=[1.0] * 2,
            hidden=[16, 16],
            activation=activation,
        )
        return make_policy("actor-critic", config)

    return make


@pytest.fixture
def rollout_batch():
    """A flat rollout batch for a policy: sampled near its actions, with a behaviour
    policy ``off`` its own (some ratios then clip) and a log std 0.1 below its own."""

    def make(policy, n=256, seed=0, off=0.3):
        g = torch.Generator().manual_seed(seed)
        obs = torch.randn(n, 5, generator=g)
        with torch.no_grad():
            mean = policy.actor(obs)
            actions = mean + 0.8 * torch.randn(n, 2, generator=g)
            logp = gaussian_logp(actions, mean, policy.log_std) + off * torch.randn(n, generator=g)
        return {
            "obs": obs,
            "actions": actions,
            "mean": mean + 0.1 * torch.randn(n, 2, generator=g),
            "logp": logp,
            "advantages": torch.randn(n, generator=g),
            "returns": torch.randn(n, generator=g),
            "values": torch.randn(n, generator=g),
            "old_log_std": policy.log_std.detach().clone() - 0.1,
        }

    return make
