"""Where PPO's reward comes from: a ``RewardSource``.

PPO asks its reward source, at every control step, for the rewards of the N envs; the
collection loop knows nothing else about rewards. Sources:

- ``EnvReward``: the env's own reward;
- ``SuccessReward``: 1 where the task reports success after the step (sparse);
- ``SavedReward``: a saved reward network (``iltk.rewards``): r(s_t), r(s_t, a_t),
  r(s_t, s_t+1), or a shaped reward's g(s_t);
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

    def prepare(self, obs_dim: int, action_dim: int, horizon: int | None = None) -> None:
        """``horizon``: the task's time limit (None: none)."""

    def rewards(self, transition, states: np.ndarray, next_states: np.ndarray) -> np.ndarray:
        """Per-env rewards of this step; ``states``: the observations it was taken in, flat;
        ``next_states``: the ones it led to (before any reset), flat."""
        raise NotImplementedError

    def absorbing(self, transition, ended: np.ndarray, final_states: np.ndarray, steps_done):
        """For the envs ``ended`` (indices) whose episodes terminated in ``final_states``
        after ``steps_done`` steps: an :class:`Absorbing`, or None (a plain termination)."""
        return None

    def logs(self) -> dict:
        return {}


class EnvReward(RewardSource):
    """The env's own reward."""

    def rewards(self, transition, states, next_states):
        return np.asarray(transition.rewards, np.float64)


class SuccessError(ValueError):
    """The task reports no success to reward."""


class SuccessReward(RewardSource):
    """1 where the task reports success after the step, else 0."""

    def rewards(self, transition, states, next_states):
        success = transition.info.get("success")
        if success is None:
            raise SuccessError(
                "this task reports no success: pass --reward-type dense (or --reward DIR)"
            )
        return np.asarray(success, np.float64)


class LearnedReward(RewardSource):
    """A reward network's r(s_t), r(s_t, a_t) (a_t: the executed action), r(s_t, s_t+1)
    or shaped f(s_t, s_t+1); ``part="g"``: a shaped reward's g(s_t) alone."""

    metrics = ("learned_reward",)

    def __init__(self, net, part: str = "full"):
        self.net = net
        self.part = part
        self._sum, self._count = 0.0, 0

    def rewards(self, transition, states, next_states):
        c = self.net.config
        actions = transition.control.executed if c.uses_action else None
        r = self.net.rewards(states, actions, next_states if c.uses_next else None, self.part)
        self._sum += float(r.mean())
        self._count += 1
        return r

    def held_rewards(self, final_states: np.ndarray) -> np.ndarray:
        """The reward per step of ended episodes held in their final states: r(s), r(s, 0)
        (no action is taken), or r(s, s) (the state it leads to is itself)."""
        c = self.net.config
        actions = np.zeros((len(final_states), c.action_dim)) if c.uses_action else None
        nexts = final_states if c.uses_next else None
        return self.net.rewards(final_states, actions, nexts, self.part)

    def logs(self) -> dict:
        out = {"learned_reward": self._sum / self._count if self._count else None}
        self._sum, self._count = 0.0, 0
        return out


class SavedReward(LearnedReward):
    """A reward saved by `iltk irl` (``--reward DIR``), checked against the task's sizes.
    A shaped reward is trained on through its g(s) (``part``; "full": f(s, s') as the
    game used it). An episode that ends before the time limit is its final state held to
    it, as in the game the reward was learned in: ending neither pays nor costs in itself
    (with a plain termination a reward below 0 would pay for ending anywhere, one above 0
    for never ending)."""

    def __init__(self, path: Path, task: str, part: str = "g"):
        from iltk.rewards import load_reward

        net = load_reward(path)
        super().__init__(net, part if net.config.kind == "shaped" else "full")
        self.path, self.task = path, task
        self.horizon: int | None = None

    def absorbing(self, transition, ended, final_states, steps_done):
        left = None if self.horizon is None else self.horizon - np.asarray(steps_done)
        return Absorbing(self.held_rewards(final_states), left)

    def prepare(self, obs_dim: int, action_dim: int, horizon: int | None = None) -> None:
        self.horizon = horizon
        c = self.net.config
        if c.obs_dim != obs_dim or (c.uses_action and c.action_dim != action_dim):
            raise ValueError(
                f"{self.path}: the reward takes observations of {c.obs_dim} values"
                + (f" and actions of {c.action_dim}" if c.uses_action else "")
                + f", but {self.task} has {obs_dim} and {action_dim}: a reward learned on"
                " another task?"
            )
