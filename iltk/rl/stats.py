"""Running statistics of PPO: observation normalization and reward scaling (SB3's VecNormalize)."""

from __future__ import annotations

import numpy as np


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


class RewardScaler:
    """Rewards divided by the running std of the discounted return and clipped to +-10
    (SB3's VecNormalize): the per-env discounted return is kept here and zeroed where an
    episode ends."""

    CLIP = 10.0

    def __init__(self, num_envs: int, gamma: float):
        self.rms = RunningMeanStd()
        self.gamma = gamma
        self.discounted = np.zeros(num_envs)

    def __call__(self, rewards: np.ndarray, done: np.ndarray) -> np.ndarray:
        """One step: update the statistics with these rewards, return them scaled."""
        self.discounted *= self.gamma
        self.discounted += rewards
        self.rms.update(self.discounted)
        scaled = self.scale(rewards)
        self.discounted[done] = 0.0
        return scaled

    def scale(self, rewards: np.ndarray) -> np.ndarray:
        """Rewards in the units PPO trains on (the statistics unchanged)."""
        return np.clip(rewards / np.sqrt(self.rms.var + 1e-8), -self.CLIP, self.CLIP)

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state)


def scale_rewards(ret_rms, discounted, rewards, done, gamma) -> np.ndarray:
    """One step of :class:`RewardScaler` on explicit state (``discounted`` updated in
    place), for checks against other libraries' reward normalization."""
    scaler = RewardScaler(len(discounted), gamma)
    scaler.rms, scaler.discounted = ret_rms, discounted
    return scaler(rewards, done)
