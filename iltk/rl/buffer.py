"""The rollout buffer: T control steps of N envs, as PPO's update reads them."""

from __future__ import annotations

import numpy as np
import torch

from iltk.rl.gae import compute_gae


class RolloutBuffer:
    """(T, N) arrays filled step by step from the control loop (``add``), then the GAE
    advantages and returns (``finish``) and the flat minibatch source (``tensors``)."""

    POLICY_KEYS = ("obs", "actions", "mean", "logp", "values")

    def __init__(self, steps: int, num_envs: int, obs_dim: int, action_dim: int):
        T, N = self.steps, self.num_envs = steps, num_envs
        self.obs = np.zeros((T, N, obs_dim), np.float32)
        self.actions = np.zeros((T, N, action_dim), np.float32)
        self.mean = np.zeros((T, N, action_dim), np.float32)
        self.logp = np.zeros((T, N), np.float32)
        self.values = np.zeros((T, N), np.float64)
        self.rewards = np.zeros((T, N), np.float64)
        self.terminated = np.zeros((T, N), bool)
        self.truncated = np.zeros((T, N), bool)
        self.final_values = np.zeros((T, N), np.float64)
        self.advantages = self.returns = None

    def add(self, t: int, control, rewards, terminated, truncated, final_values) -> None:
        """Step ``t``: the ControlOutput of ``iltk.rl.acting.ActorController`` (what was
        sampled, its log-probability, mean and value), the rewards PPO trains on, how each
        env's episode ended, and the values that bootstrap the truncated ones."""
        fields = control.fields
        self.obs[t] = fields["norm_obs"]
        self.actions[t] = control.label
        self.mean[t] = fields["mean"]
        self.logp[t] = fields["logp"]
        self.values[t] = fields["value"]
        self.rewards[t] = rewards
        self.terminated[t], self.truncated[t] = terminated, truncated
        self.final_values[t] = final_values

    def finish(self, last_values: np.ndarray, gamma: float, lam: float) -> None:
        """GAE over the filled rollout; ``last_values``: V after its last step."""
        self.advantages, self.returns = compute_gae(
            self.rewards,
            self.values,
            self.terminated,
            self.truncated,
            self.final_values,
            last_values,
            gamma,
            lam,
        )

    def explained_variance(self) -> float:
        var = self.returns.var()
        return float(1 - (self.returns - self.values).var() / var) if var > 0 else float("nan")

    def tensors(self, device) -> dict:
        """The rollout flattened to (T * N, ...) float32 tensors on ``device``."""
        n = self.steps * self.num_envs

        def flat(x):
            return torch.as_tensor(
                np.asarray(x, np.float32).reshape(n, *x.shape[2:]), device=device
            )

        batch = {k: flat(getattr(self, k)) for k in self.POLICY_KEYS}
        batch["advantages"], batch["returns"] = flat(self.advantages), flat(self.returns)
        return batch
