"""Tabular MDPs MaxEnt IRL learns on (``object_world``, ``random_mdp``; gymnasium envs
``iltk/ObjectWorld-v0`` and ``iltk/RandomMDP-v0`` whose expert is soft-optimal for the true
reward, so demonstrations are recorded in the one episode format like any other task's).
The chain of the compounding-errors argument is ``iltk.envs.chain``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np


# ------------------------------------------------------------------ MDPs for IRL
@dataclass
class TabularMDP:
    """A finite MDP with state features and a true reward (what MaxEnt IRL is tested on).

    Attributes:
        P: (S, A, S) transition probabilities.
        features: (S, F) features of each state.
        reward: (S,) the true reward (the expert is soft-optimal for it).
        init: (S,) initial state distribution.
        horizon: episode length H.
        grid: (rows, cols) when the states are the cells of a grid (row-major), for plots.
    """

    P: np.ndarray
    features: np.ndarray
    reward: np.ndarray
    init: np.ndarray
    horizon: int
    grid: tuple[int, int] | None = None

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]


MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])  # stay, up, down, left, right


def object_world(
    size: int = 8,
    n_objects: int = 6,
    slip: float = 0.2,
    horizon: int = 20,
    seed: int = 0,
) -> TabularMDP:
    """A grid with objects of two colours (after Levine et al. 2011's object world).

    Five actions (stay, up, down, left, right); a move goes in a random other direction
    with probability ``slip``. Features of a cell: for each colour, whether an object of
    that colour lies within Chebyshev distance 1, 2 and 3 (6 features) and a constant. The
    true reward is linear in them: near colour 0 is good, near colour 1 bad. Episodes
    start in a uniformly random cell.
    """
    if size < 2 or n_objects < 2 or not 0 <= slip < 1 or horizon < 1:
        raise ValueError("need size >= 2, n_objects >= 2, 0 <= slip < 1, horizon >= 1")
    rng = np.random.default_rng(seed)
    S, A = size * size, len(MOVES)
    cells = np.stack(np.divmod(np.arange(S), size), 1)
    P = np.zeros((S, A, S))
    for a in range(A):
        for b in range(A):
            prob = (1 - slip) if a == b else slip / (A - 1)
            nxt = np.clip(cells + MOVES[b], 0, size - 1)
            np.add.at(P, (np.arange(S), a, nxt[:, 0] * size + nxt[:, 1]), prob)
    where = rng.choice(S, n_objects, replace=False)
    colour = np.arange(n_objects) % 2
    dist = np.abs(cells[:, None, :] - cells[where][None]).max(-1)  # (S, objects)
    feats = [(dist[:, colour == c].min(1) <= d).astype(float) for c in (0, 1) for d in (1, 2, 3)]
    features = np.stack([*feats, np.ones(S)], 1)
    theta = np.array([1.0, 0.5, 0.25, -1.0, -0.5, -0.25, 0.0])
    return TabularMDP(P, features, features @ theta, np.full(S, 1.0 / S), horizon, (size, size))


def random_mdp(
    n_states: int = 50,
    n_actions: int = 4,
    successors: int = 5,
    n_features: int = 8,
    horizon: int = 20,
    seed: int = 0,
) -> TabularMDP:
    """A random MDP: each (s, a) reaches ``successors`` random states (Dirichlet
    probabilities); Gaussian features; a true reward linear in them; random starts."""
    rng = np.random.default_rng(seed)
    S, A = n_states, n_actions
    P = np.zeros((S * A, S))
    cols = rng.integers(0, S, (S * A, successors))
    probs = rng.dirichlet(np.ones(successors), S * A)
    np.add.at(P, (np.repeat(np.arange(S * A), successors), cols.ravel()), probs.ravel())
    features = rng.normal(size=(S, n_features))
    init = rng.random(S)
    return TabularMDP(
        P.reshape(S, A, S),
        features,
        features @ rng.normal(size=n_features),
        init / init.sum(),
        horizon,
    )


def soft_optimal_policy(mdp: TabularMDP) -> np.ndarray:
    """The expert: the maximum-causal-entropy optimal policy for the true reward, pi[t, s, a]
    (H, S, A), by soft value iteration (Q[H-1] = r; Q[t] = r + P V[t+1]; V = logsumexp Q).
    ``iltk.algos.irl.tabular.soft_value_iteration`` is the general solver (torch, sparse,
    infinite horizon); this small numpy one keeps the env layer free of it."""
    H, (S, A) = mdp.horizon, mdp.P.shape[:2]
    Q = np.empty((H, S, A))
    V = np.empty((H, S))
    for t in reversed(range(H)):
        Q[t] = mdp.reward[:, None] + (0.0 if t == H - 1 else mdp.P @ V[t + 1])
        V[t] = np.logaddexp.reduce(Q[t], axis=1)
    return np.exp(Q - V[:, :, None])


class TabularEnv(gym.Env):
    """A :class:`TabularMDP` as a gymnasium env: the observation is the state index
    (``Discrete(S)``), the action an index (``Discrete(A)``), the reward the true one, and
    an episode lasts ``horizon`` steps (truncated). ``expert_action()`` samples the
    soft-optimal expert at the current state and time, from the episode's own stream
    (seeded by ``reset(seed=...)``), so demonstrations are reproducible."""

    metadata = {"render_modes": []}

    def __init__(self, mdp: TabularMDP | None = None, world: str = "object", **kwargs):
        if mdp is None:
            mdp = object_world(**kwargs) if world == "object" else random_mdp(**kwargs)
        self.mdp = mdp
        self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        self.expert_pi = soft_optimal_policy(mdp)
        self.state, self.t = 0, 0
        self.np_random_expert = np.random.default_rng()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.np_random_expert = np.random.default_rng(
            None if seed is None else [int(seed) & 0xFFFFFFFF, 1]
        )
        self.state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.init))
        self.t = 0
        return self.state, {"t": 0}

    def step(self, action):
        a = int(np.asarray(action).reshape(-1)[0])
        if not 0 <= a < self.mdp.n_actions:
            raise ValueError(f"action must be in [0, {self.mdp.n_actions}), got {action}")
        reward = float(self.mdp.reward[self.state])
        self.state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.P[self.state, a]))
        self.t += 1
        return self.state, reward, False, self.t >= self.mdp.horizon, {"t": self.t}

    def expert_action(self) -> int:
        t = min(self.t, self.mdp.horizon - 1)
        return int(
            self.np_random_expert.choice(self.mdp.n_actions, p=self.expert_pi[t, self.state])
        )
