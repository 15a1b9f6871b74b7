"""The chain MDP and tabular learner behind the horizon experiment."""

import numpy as np

from iltk.envs.chain import STAY, SWITCH, ChainMDP, TabularLearner


def test_chain_dynamics_and_expert():
    mdp = ChainMDP(5)
    assert mdp.step_state(2, STAY, 2) == 3 and mdp.step_state(2, SWITCH, 2) == mdp.lost
    assert (
        mdp.step_state(mdp.lost, STAY, 3) == mdp.lost and mdp.step_state(mdp.lost, SWITCH, 3) == 4
    )
    expert = np.array([float(mdp.expert(s)) for s in range(mdp.n_states)])
    visited, cost = mdp.rollout(expert, np.random.default_rng(0))
    assert visited == [0, 1, 2, 3, 4] and cost == 0


def test_learner_errs_at_rate_eps_and_defaults_where_unseen():
    learner = TabularLearner(4, eps=0.1)
    policy = learner.fit([0, 0, 1], [STAY, STAY, SWITCH])
    np.testing.assert_allclose(policy, [0.1, 0.9, 0.0, 0.0])


def test_bc_cost_grows_faster_than_dagger():
    def costs(h, rng):
        mdp = ChainMDP(h)
        learner = TabularLearner(mdp.n_states, 0.01)
        expert = np.array([float(mdp.expert(s)) for s in range(mdp.n_states)])
        states, _ = mdp.rollout(expert, rng)
        bc = learner.fit(states, [mdp.expert(s) for s in states])
        data = list(states)
        for _ in range(100):
            data += mdp.rollout(bc, rng)[0]
        dagger = learner.fit(data, [mdp.expert(s) for s in data])
        return [np.mean([mdp.rollout(p, rng)[1] for _ in range(1500)]) for p in (bc, dagger)]

    rng = np.random.default_rng(0)
    (bc20, dg20), (bc80, dg80) = costs(20, rng), costs(80, rng)
    assert bc80 / bc20 > 8  # ~16 for quadratic growth
    assert dg80 / dg20 < 6  # ~4 for linear growth
    assert dg80 < bc80 / 5
