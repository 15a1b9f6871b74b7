"""Tabular MaxEnt IRL: the passes against direct computations, and IRL recovering a reward."""

import itertools

import numpy as np
import pytest
import torch

from iltk.algos.irl.tabular import (
    expert_visitation,
    maxent_irl,
    soft_value_iteration,
    state_action_visitation,
    state_visitation,
)


def random_mdp(S=5, A=3, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.random((S, A, S)) ** 3
    P /= P.sum(-1, keepdims=True)
    init = rng.random(S)
    return P, init / init.sum(), rng


def direct_soft_vi(P, r_sa, H, g):
    """The recurrences with scalar loops: an independent implementation."""
    S, A, _ = P.shape
    V = np.zeros((H, S))
    Q = np.zeros((H, S, A))
    for t in reversed(range(H)):
        for s in range(S):
            for a in range(A):
                nxt = 0.0 if t == H - 1 else sum(P[s, a, s2] * V[t + 1, s2] for s2 in range(S))
                Q[t, s, a] = r_sa[s, a] + g * nxt
            V[t, s] = np.log(sum(np.exp(Q[t, s, a]) for a in range(A)))
    return V, Q, np.exp(Q - V[:, :, None])


@pytest.mark.parametrize("state_action", [False, True])
def test_finite_horizon_soft_vi_and_visitation_match_direct(state_action):
    P, init, rng = random_mdp()
    H, g = 6, 0.9
    r = rng.normal(size=(5, 3) if state_action else 5)
    V, Q, pi = soft_value_iteration(P, r, H, g)
    r_sa = r if state_action else np.repeat(r[:, None], 3, 1)
    V2, Q2, pi2 = direct_soft_vi(P, r_sa, H, g)
    np.testing.assert_allclose(V, V2, atol=1e-12)
    np.testing.assert_allclose(Q, Q2, atol=1e-12)
    np.testing.assert_allclose(pi, pi2, atol=1e-12)
    assert V.shape == (H, 5) and Q.shape == pi.shape == (H, 5, 3)
    D, Dcum = state_visitation(P, pi, init, H, g)
    D2 = [init]
    for t in range(H):  # D[t+1][s'] = sum_s sum_a D[t][s] pi[t,s,a] P[s,a,s']
        D2.append(np.einsum("s,sa,sap->p", D2[-1], pi[t], P))
    np.testing.assert_allclose(D, np.array(D2), atol=1e-12)
    np.testing.assert_allclose(D.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(Dcum, sum(g**t * D2[t] for t in range(H + 1)), atol=1e-12)


def test_soft_value_is_log_partition_on_a_deterministic_mdp():
    """With deterministic transitions and g = 1, V[0](s) = log sum over action sequences of
    exp(total reward): the MaxEnt trajectory distribution's normalizer."""
    S, A, H = 4, 2, 4
    rng = np.random.default_rng(3)
    nxt = rng.integers(0, S, (S, A))
    P = np.zeros((S, A, S))
    P[np.arange(S)[:, None], np.arange(A)[None], nxt] = 1.0
    r = rng.normal(size=S)
    V, _, _ = soft_value_iteration(P, r, H, 1.0)
    for s0 in range(S):
        total = 0.0
        for seq in itertools.product(range(A), repeat=H):
            s, ret = s0, 0.0
            for t, a in enumerate(seq):
                ret += r[s]
                if t < H - 1:
                    s = nxt[s, a]
            # the last action is counted too (its successor earns nothing: Q[H-1] = r)
            total += np.exp(ret)
        assert V[0, s0] == pytest.approx(np.log(total / A**0), rel=1e-12)


def test_infinite_horizon_fixed_points():
    P, init, rng = random_mdp(S=6, A=2, seed=1)
    g = 0.95
    r = rng.normal(size=(6, 2))
    V, Q, pi = soft_value_iteration(P, r, None, g)
    # the soft Bellman equation holds, and pi is a distribution
    np.testing.assert_allclose(Q, r + g * P @ V, atol=1e-8)
    np.testing.assert_allclose(V, np.log(np.exp(Q).sum(1)), atol=1e-8)
    np.testing.assert_allclose(pi.sum(1), 1.0, atol=1e-12)
    d, _ = state_visitation(P, pi, init, None, g)
    P_pi = np.einsum("sa,sap->sp", pi, P)
    direct = np.linalg.solve(np.eye(6) - g * P_pi.T, init)
    np.testing.assert_allclose(d, direct, atol=1e-8)
    assert d.sum() == pytest.approx(1 / (1 - g), rel=1e-8)
    with pytest.raises(ValueError, match="discount"):
        soft_value_iteration(P, r, None, 1.0)


def test_sparse_equals_dense_and_torch_in_torch_out():
    P, init, rng = random_mdp(S=7, A=3, seed=2)
    P[P < 0.05] = 0.0
    P /= P.sum(-1, keepdims=True)
    r = rng.normal(size=7)
    dense = soft_value_iteration(P, r, 5, 0.9)
    sparse_P = torch.as_tensor(P.reshape(21, 7)).to_sparse()
    sparse = soft_value_iteration(sparse_P, torch.as_tensor(r), 5, 0.9)
    assert all(isinstance(x, torch.Tensor) for x in sparse)
    for a, b in zip(dense, sparse):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-12)
    Dd, _ = state_visitation(P, dense[2], init, 5, 0.9)
    Ds, _ = state_visitation(sparse_P, sparse[2], torch.as_tensor(init), 5, 0.9)
    np.testing.assert_allclose(Dd, Ds.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="P must be"):
        soft_value_iteration(np.ones((3, 2)), r, 5)


@pytest.mark.parametrize("state_action", [False, True])
def test_irl_recovers_a_reward_with_the_experts_visitation(state_action):
    """Expert = soft-optimal for a true reward linear in the features; IRL from the expert's
    exact visitation finds a reward whose soft-optimal policy visits as the expert does."""
    S, A, H, g = 12, 3, 8, 1.0
    P, init, rng = random_mdp(S, A, seed=4)
    phi = rng.normal(size=(S, 4))
    theta = rng.normal(size=(4, A) if state_action else 4)
    true_r = phi @ theta
    _, _, pi_e = soft_value_iteration(P, true_r, H, g)
    D_e, Dcum_e = state_visitation(P, pi_e, init, H, g)
    target = state_action_visitation(D_e, pi_e, g, H) if state_action else Dcum_e
    res = maxent_irl(
        P,
        phi,
        init,
        target,
        horizon=H,
        discount=g,
        state_action=state_action,
        lr=0.1,
        max_iter=2000,
        linf_eps=1e-4,
    )
    assert res.converged and res.iterations < 2000
    assert np.abs(res.visitation - target).max() <= 1e-4
    # the learned reward's soft-optimal policy reproduces the expert's state visitation
    _, _, pi = soft_value_iteration(P, res.reward, H, g)
    _, Dcum = state_visitation(P, pi, init, H, g)
    np.testing.assert_allclose(Dcum, Dcum_e, atol=5e-4)
    # a uniform policy does not (the test could fail)
    _, Dcum_u = state_visitation(P, np.full((H, S, A), 1 / A), init, H, g)
    assert np.abs(Dcum_u - Dcum_e).max() > 10 * 5e-4


@pytest.mark.parametrize("state_action", [False, True])
def test_closed_form_linear_gradient_equals_autograd(state_action):
    """The numpy path's closed-form gradient of a linear reward takes the same Adam steps
    as autograd does through the same linear layer (wrapped, so the closed form is off)."""
    S, A, H = 10, 3, 6
    P, init, rng = random_mdp(S, A, seed=7)
    phi = rng.normal(size=(S, 5))
    target = rng.random((S, A) if state_action else S) * H / S
    common = dict(horizon=H, state_action=state_action, lr=0.05, max_iter=25, linf_eps=0.0)
    fast = maxent_irl(P, phi, init, target, **common)
    layer = torch.nn.Linear(5, A if state_action else 1, bias=False).double()
    torch.nn.init.zeros_(layer.weight)
    slow = maxent_irl(P, phi, init, target, model=torch.nn.Sequential(layer), **common)
    assert fast.iterations == slow.iterations == 25
    assert np.abs(fast.reward).max() > 0.1  # it moved
    np.testing.assert_allclose(fast.reward, slow.reward, rtol=1e-9, atol=1e-12)
    assert [h["grad_norm"] for h in fast.history] == pytest.approx(
        [h["grad_norm"] for h in slow.history], rel=1e-9
    )


def test_irl_from_trajectories_with_an_mlp_reward():
    S, A, H = 10, 2, 6
    P, init, rng = random_mdp(S, A, seed=5)
    phi = np.eye(S)
    true_r = rng.normal(size=S) * 2
    _, _, pi_e = soft_value_iteration(P, true_r, H, 1.0)
    trajs = []
    for _ in range(3000):
        s = rng.choice(S, p=init)
        states, actions = [s], []
        for t in range(H):
            a = rng.choice(A, p=pi_e[t, s])
            s = rng.choice(S, p=P[s, a])
            states.append(s)
            actions.append(a)
        trajs.append((states, actions))
    target = expert_visitation(trajs, S, A)
    assert target.sum() == pytest.approx(H + 1)
    res = maxent_irl(
        P, phi, init, target, horizon=H, model="mlp", lr=0.01, max_iter=3000, linf_eps=0.02
    )
    assert res.converged
    _, Dcum_e = state_visitation(P, pi_e, init, H)
    # sampled counts carry sampling noise (3000 trajectories): within a few hundredths
    assert np.abs(res.visitation - Dcum_e).max() < 0.06


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path_matches_cpu():
    P, init, rng = random_mdp(S=50, A=4, seed=6)
    r = rng.normal(size=50)
    cpu = soft_value_iteration(P, r, 20, 0.99)
    gpu = soft_value_iteration(torch.as_tensor(P).cuda(), torch.as_tensor(r).cuda(), 20, 0.99)
    for a, b in zip(cpu, gpu):
        assert b.is_cuda
        np.testing.assert_allclose(a, b.cpu().numpy(), atol=1e-10)


def test_object_world_demos_in_the_one_format_teach_irl(tmp_path):
    """The whole path: a tabular env's soft-optimal expert records episodes in the one
    format; IRL learns from the file; its policy visits states as the expert does."""
    import iltk  # noqa: F401  (registers the tasks)
    from iltk.algos.irl.tabular import demo_trajectories
    from iltk.collect import collect_demos
    from iltk.envs.tabular import object_world, soft_optimal_policy

    mdp = object_world()  # the env's defaults
    # the env's own small planner agrees with the general solver
    _, _, pi = soft_value_iteration(mdp.P, mdp.reward, mdp.horizon)
    np.testing.assert_allclose(soft_optimal_policy(mdp), pi, atol=1e-12)
    path = tmp_path / "ow.hdf5"
    collect_demos("iltk/ObjectWorld-v0", path, 400, progress=False)
    trajs = demo_trajectories(path)
    assert len(trajs) == 400 and all(len(s) == mdp.horizon + 1 for s, _ in trajs)
    target = expert_visitation(trajs, mdp.n_states, mdp.n_actions)
    res = maxent_irl(
        mdp.P,
        mdp.features,
        mdp.init,
        target,
        horizon=mdp.horizon,
        lr=0.05,
        max_iter=1000,
        linf_eps=0.05,
    )
    _, Dcum_expert = state_visitation(mdp.P, pi, mdp.init, mdp.horizon)
    _, Dcum_uniform = state_visitation(
        mdp.P, np.full(pi.shape, 1 / mdp.n_actions), mdp.init, mdp.horizon
    )
    err = np.abs(res.visitation - Dcum_expert).max()
    assert err < 0.5 * np.abs(Dcum_uniform - Dcum_expert).max(), err
    # the learned reward ranks cells as the true one does (it is linear in the same features)
    assert np.corrcoef(res.reward, mdp.reward)[0, 1] > 0.8
