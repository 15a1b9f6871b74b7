"""Where PPO's reward comes from: a ``RewardSource``.

PPO asks its reward source, at every control step, for the rewards of the N envs; the
collection loop knows nothing else about rewards. Sources:

- ``EnvReward``: the env's own reward;
- ``SuccessReward``: 1 where the task reports success after the step (sparse);
- ``SavedReward``: a saved reward network (``iltk.rewards``), r(s_t) or r(s_t, a_t);
- the live reward of adversarial IRL (``iltk.algos.irl.deep.RewardPlayer``), whose ended
  episodes are absorbing states (below).

A source may declare that a terminated episode is an absorbing state that keeps paying
(``absorbing``): its final state held for the remaining steps of the horizon (DAC's
absorbing states; IRL's demonstrations are padded the same way). PPO then bootstraps the
episode's last step with the discounted sum of that state's reward instead of 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np


class Absorbing(NamedTuple):
    """Ended episodes held in their final state: its reward per step (in the source's
    units) and the steps left to the horizon (None: held forever)."""

    reward: np.ndarray
    steps: np.ndarray | None


class RewardSource:
    """The rewards PPO trains on. ``prepare`` is called once the task is known (to check
    sizes), ``rewards`` at every step, ``absorbing`` where episodes terminated, ``logs``
    once per rollout (added to the training row)."""

    metrics: tuple[str, ...] = ()

    def prepare(self, obs_dim: int, action_dim: int) -> None:
        pass

    def rewards(self, transition, states: np.ndarray) -> np.ndarray:
        """Per-env rewards of this step; ``states``: the observations it was taken in, flat."""
        raise NotImplementedError

    def absorbing(self, transition, ended: np.ndarray, final_states: np.ndarray, steps_done):
        """For the envs ``ended`` (indices) whose episodes terminated in ``final_states``
        after ``steps_done`` steps: an :class:`Absorbing`, or None (a plain termination)."""
        return None

    def logs(self) -> dict:
        return {}


class EnvReward(RewardSource):
    """The env's own reward."""

    def rewards(self, transition, states):
        return np.asarray(transition.rewards, np.float64)


class SuccessError(ValueError):
    """The task reports no success to reward."""


class SuccessReward(RewardSource):
    """1 where the task reports success after the step, else 0."""

    def rewards(self, transition, states):
        success = transition.info.get("success")
        if success is None:
            raise SuccessError(
                "this task reports no success: pass --reward-type dense (or --reward DIR)"
            )
        return np.asarray(success, np.float64)


class LearnedReward(RewardSource):
    """A reward network's r(s_t) or r(s_t, a_t) (a_t: the executed action)."""

    metrics = ("learned_reward",)

    def __init__(self, net):
        self.net = net
        self._sum, self._count = 0.0, 0

    def rewards(self, transition, states):
        actions = None if self.net.config.state_only else transition.control.executed
        r = self.net.rewards(states, actions)
        self._sum += float(r.mean())
        self._count += 1
        return r

    def logs(self) -> dict:
        out = {"learned_reward": self._sum / self._count if self._count else None}
        self._sum, self._count = 0.0, 0
        return out


class SavedReward(LearnedReward):
    """A reward saved by `iltk irl` (``--reward DIR``), checked against the task's sizes."""

    def __init__(self, path: Path, task: str):
        from iltk.rewards import load_reward

        super().__init__(load_reward(path))
        self.path, self.task = path, task

    def prepare(self, obs_dim: int, action_dim: int) -> None:
        c = self.net.config
        if c.obs_dim != obs_dim or (not c.state_only and c.action_dim != action_dim):
            raise ValueError(
                f"{self.path}: the reward takes observations of {c.obs_dim} values"
                + ("" if c.state_only else f" and actions of {c.action_dim}")
                + f", but {self.task} has {obs_dim} and {action_dim}: a reward learned on"
                " another task?"
            )
