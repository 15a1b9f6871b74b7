"""Generalized advantage estimation (Schulman et al. 2016) over a (T, N) rollout."""

from __future__ import annotations

import numpy as np


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
    terminated, ``final_values[t]`` where it was truncated (by a time limit the MDP goes
    on: the value of the final observation; an absorbing final state: its value), and
    ``values[t + 1]`` otherwise (``last_values`` after the last step). The sum
    A_t = sum_l (gamma lambda)^l delta_{t+l} stops where the episode ended, terminated or
    truncated. Returns R_t = A_t + V(s_t).
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
