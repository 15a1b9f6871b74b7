"""The chain on which compounding errors are made visible, and the learner the argument
assumes (the horizon experiment of ``benchmarks/compounding_errors.py``).

``ChainMDP(horizon)``: at each of ``horizon`` steps the agent is either on the path (state
``t``) or lost (one shared state, ``horizon``). Two actions: ``STAY`` keeps an on-path
agent on the path and a lost one lost; ``SWITCH`` throws an on-path agent off and brings a
lost one back onto the path. The expert plays STAY on the path and SWITCH when lost (it
can label any state). Cost is 1 for every step spent lost.

``TabularLearner``: an imitation learner that errs with probability eps where it was
trained, and acts by default (STAY) where it has never seen a label. It pays
O(eps * H^2) when it only saw the expert's path (one slip and it never recovers), and
O(eps * H) when it was trained on its own state distribution (DAgger), because it
learned to recover (Ross & Bagnell 2010).
"""

from __future__ import annotations

import numpy as np

STAY, SWITCH = 0, 1


class ChainMDP:
    def __init__(self, horizon: int):
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        self.horizon = horizon
        self.lost = horizon
        self.n_states = horizon + 1

    def step_state(self, state: int, action: int, t: int) -> int:
        """The state at time t + 1 after acting in ``state`` at time t."""
        lost_next = (state == self.lost) != (action == SWITCH)
        return self.lost if lost_next else min(t + 1, self.horizon - 1)

    def expert(self, state: int) -> int:
        return SWITCH if state == self.lost else STAY

    def is_lost(self, state: int) -> bool:
        return state == self.lost

    def rollout(self, policy: np.ndarray, rng: np.random.Generator) -> tuple[list[int], int]:
        """Run a stochastic tabular policy (``policy[s]`` = P(SWITCH | s)) from state 0.

        Returns the visited states and the cost (steps spent lost).
        """
        state, visited, cost = 0, [], 0
        for t in range(self.horizon):
            visited.append(state)
            cost += int(self.is_lost(state))
            action = SWITCH if rng.random() < policy[state] else STAY
            state = self.step_state(state, action, t)
        return visited, cost


class TabularLearner:
    """Majority-vote imitation that errs with probability ``eps`` where it was trained.

    ``fit(states, labels)`` returns P(SWITCH | s) per state: the majority label of every
    seen state, taken with probability 1 - eps (the other action with probability eps: a
    learner with error eps on its training distribution), and ``default`` on states it
    never saw.
    """

    def __init__(self, n_states: int, eps: float, default: int = STAY):
        self.n, self.eps, self.default = n_states, eps, default

    def fit(self, states: list[int], labels: list[int]) -> np.ndarray:
        counts = np.zeros((self.n, 2))
        np.add.at(counts, (np.asarray(states), np.asarray(labels)), 1)
        seen = counts.sum(1) > 0
        majority = np.where(seen, counts.argmax(1), self.default)
        p_switch = np.where(majority == SWITCH, 1.0 - self.eps, self.eps)
        return np.where(seen, p_switch, float(self.default == SWITCH))
