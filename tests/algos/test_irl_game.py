"""The IRL game's pieces: reward classes, the dual and primal schedules, the BC warm start,
and the game on tabular MDPs where the exact answers are known."""

import json

import numpy as np
import pytest
import torch

from iltk.algos.irl.deep import BCRegularizer, BCWarmStart, Demonstrations, RewardPlayer
from iltk.algos.irl.game import soft_q, tabular_game
from iltk.algos.irl.tabular import maxent_irl, soft_value_iteration, state_visitation
from iltk.algos.settings import IRLConfig, RewardPlayerSettings, TabularIRLSettings
from iltk.envs import make_env
from iltk.rewards import RewardConfig, RewardNet, load_reward


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(np.float64)


def spearman(a, b) -> float:
    return float(np.corrcoef(ranks(np.asarray(a)), ranks(np.asarray(b)))[0, 1])


# ------------------------------------------------------------------- reward classes
def test_each_reward_class_computes_its_formula():
    torch.manual_seed(0)
    s, a, s2 = torch.randn(5, 3), torch.randn(5, 2), torch.randn(5, 3)
    shaped = RewardNet(RewardConfig(obs_dim=3, action_dim=2, kind="shaped", gamma=0.9))
    shaped.set_obs_stats(np.array([1.0, 0.0, -1.0]), np.array([2.0, 1.0, 0.5]))
    x, x2 = (s - shaped.obs_mean) / shaped.obs_std, (s2 - shaped.obs_mean) / shaped.obs_std
    g, h = shaped.net(x)[:, 0], shaped.h(x)[:, 0]
    by_hand = g + 0.9 * shaped.h(x2)[:, 0] - h
    torch.testing.assert_close(shaped(s, None, s2), by_hand)
    torch.testing.assert_close(shaped(s, None, s2, part="g"), g)
    ss = RewardNet(RewardConfig(obs_dim=3, kind="ss"))
    torch.testing.assert_close(ss(s, None, s2), ss.net(torch.cat([s, s2], -1))[:, 0])
    sa = RewardNet(RewardConfig(obs_dim=3, action_dim=2, kind="sa"))
    torch.testing.assert_close(sa(s, a), sa.net(torch.cat([s, a], -1))[:, 0])
    with pytest.raises(ValueError, match="depends on the next state"):
        ss(s)
    with pytest.raises(ValueError, match="pass the actions too"):
        sa(s)
    with pytest.raises(ValueError, match="reward kind must be one of"):
        RewardConfig(obs_dim=3, kind="q")


def test_shaped_rewards_round_trip_and_old_checkpoints_still_load(tmp_path):
    net = RewardNet(RewardConfig(obs_dim=4, kind="shaped", gamma=0.95))
    net.save(tmp_path / "shaped")
    back = load_reward(tmp_path / "shaped")
    assert back.config.kind == "shaped" and back.config.gamma == 0.95
    s, s2 = np.random.default_rng(0).normal(size=(2, 6, 4))
    np.testing.assert_allclose(back.rewards(s, None, s2), net.rewards(s, None, s2), rtol=1e-6)
    # a checkpoint written before the reward classes: {"state_only": false} is r(s, a)
    old = RewardNet(RewardConfig(obs_dim=4, action_dim=2, kind="sa"))
    old.save(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    cfg["config"].pop("kind")
    cfg["config"].pop("gamma")
    cfg["config"]["state_only"] = False
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    assert load_reward(tmp_path / "old").config.kind == "sa"


def test_a_reward_reads_only_its_inputs_and_keeps_them_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = RewardNet(RewardConfig(obs_dim=5, kind="shaped", inputs=[3, 1]))
    net.set_obs_stats(np.arange(5.0), np.arange(1.0, 6.0))
    s, s2 = torch.randn(6, 5), torch.randn(6, 5)
    x = ((s - net.obs_mean) / net.obs_std)[:, [3, 1]]
    x2 = ((s2 - net.obs_mean) / net.obs_std)[:, [3, 1]]
    by_hand = net.net(x)[:, 0] + 0.99 * net.h(x2)[:, 0] - net.h(x)[:, 0]
    torch.testing.assert_close(net(s, None, s2), by_hand)
    moved = s.clone()
    moved[:, [0, 2, 4]] += 10.0  # values it does not read
    torch.testing.assert_close(net(moved, None, s2), net(s, None, s2))
    net.save(tmp_path / "r")
    back = load_reward(tmp_path / "r")
    assert back.config.inputs == [3, 1]
    torch.testing.assert_close(back(s, None, s2), net(s, None, s2))
    for bad in ([5], [], [1, 1], [-1]):
        with pytest.raises(ValueError, match="distinct indices in 0..4"):
            RewardConfig(obs_dim=5, inputs=bad)


# ------------------------------------------------------------------ the reward player
def _player(**cfg):
    rng = np.random.default_rng(0)
    expert = np.c_[np.ones(200), rng.normal(size=200)].astype(np.float32)
    demos = Demonstrations(expert, np.zeros((200, 1), np.float32), [expert], [0], 0, {})
    player = RewardPlayer(IRLConfig(task="iltk/Reach-v0", **cfg), demos, "cpu")
    player.prepare(2, 1)
    return player


class _Transition:
    def __init__(self, n):
        self.episode_index = np.zeros(n, int)
        self.control = type("C", (), {"executed": np.zeros((n, 1), np.float32)})()


def test_the_dual_moves_the_reward_once_per_best_response_and_the_primal_every_update():
    for game, every in [("dual", 3), ("primal", 1)]:
        player = _player(game=game, best_response=3, reward=RewardPlayerSettings(updates=2))
        moved = []
        for _ in range(7):
            s = np.c_[-np.ones(8), np.zeros(8)].astype(np.float32)
            player.rewards(_Transition(8), s, s)
            moved.append(player.on_update_end(None)["reward_moved"])
        assert moved == [float((k + 1) % every == 0) for k in range(7)], (game, moved)
        assert player.updates == 7 // every


@pytest.mark.parametrize("kind", ["sa", "ss", "shaped"])
def test_every_reward_class_raises_the_demos_against_the_policy(kind):
    player = _player(reward=RewardPlayerSettings(kind=kind, updates=200, grad_penalty=10.0))
    policy = np.c_[-np.ones(200), np.zeros(200)].astype(np.float32)
    logs = player.update(policy, np.zeros((200, 1), np.float32), policy)
    assert logs["reward_gap"] > 0.5, logs
    assert player.net.config.kind == kind


def test_the_augmented_lagrangian_penalty_shrinks_the_multipliers():
    policy = np.c_[-np.ones(200), np.zeros(200)].astype(np.float32)
    sizes = []
    for aula in (0.0, 1.0):
        st = RewardPlayerSettings(updates=300, lr=1e-2, aula=aula, l2=0.0, grad_penalty=0.0)
        player = _player(reward=st)
        player.update(policy, np.zeros((200, 1), np.float32))
        sizes.append(float(player.net.last_layers()[0].weight.detach().norm()))
    # the gap alone grows the multipliers without bound; the penalty holds them at the
    # optimum of gap - |w|^2: each of the 64 tanh features differs by at most 2 between
    # the sets, so w_i <= 1 and |w| <= 8
    assert sizes[1] < 8.05 and sizes[1] < 0.5 * sizes[0], sizes


def test_the_bc_warm_start_fits_ppos_actor_to_the_demonstrations():
    from iltk.policies.actor_critic import ActorCritic, ActorCriticConfig
    from iltk.rl.stats import RunningMeanStd

    rng = np.random.default_rng(0)
    s = rng.normal(size=(600, 3)).astype(np.float32) * [1.0, 5.0, 0.1] + [0.0, 10.0, 0.0]
    a = np.tanh(s[:, :2] * [1.0, 0.2] - [0.0, 2.0]).astype(np.float32)
    acted = np.ones(600, bool)
    acted[-100:] = False  # padding: its zero actions are not fitted
    a[-100:] = 0.0
    demos = Demonstrations(s, a, [s], [0], 100, {}, s, acted)
    policy = ActorCritic(
        ActorCriticConfig(state_dim=3, action_dim=2, action_low=[-1, -1], action_high=[1, 1])
    )
    ppo = type("P", (), {"policy": policy, "obs_rms": RunningMeanStd(3)})()
    warm = BCWarmStart(demos, steps=1500, seed=0)
    warm.on_train_start(ppo)
    np.testing.assert_allclose(ppo.obs_rms.mean, s[:500].mean(0), rtol=1e-5)
    z = (s[:500] - ppo.obs_rms.mean) / np.sqrt(ppo.obs_rms.var + 1e-8)
    with torch.no_grad():
        pred = policy.actor(torch.as_tensor(z, dtype=torch.float32)).numpy()
    err = np.abs(pred - a[:500]).mean()
    assert err < 0.05, err
    std = policy.log_std.exp().detach().numpy()
    np.testing.assert_allclose(std, 0.1)  # the residual is below the floor
    assert warm.on_update_end(ppo)["bc_loss"] < 0.01


def test_the_bc_term_is_the_actors_error_on_the_demos_in_ppos_normalization_and_decays():
    from iltk.policies.actor_critic import ActorCritic, ActorCriticConfig
    from iltk.rl.stats import RunningMeanStd

    rng = np.random.default_rng(1)
    s = (rng.normal(size=(300, 3)) * [1.0, 5.0, 0.1] + [0.0, 10.0, 0.0]).astype(np.float32)
    a = np.tanh(s[:, :2] * [1.0, 0.2] - [0.0, 2.0]).astype(np.float32)
    acted = np.ones(300, bool)
    acted[-50:] = False  # padding is never cloned
    a[-50:] = 5.0  # (an impossible label: it would show in the error)
    demos = Demonstrations(s, a, [s], [0], 50, {}, s, acted)
    policy = ActorCritic(
        ActorCriticConfig(state_dim=3, action_dim=2, action_low=[-1, -1], action_high=[1, 1])
    )
    rms = RunningMeanStd(3)
    rms.update(s[:250].astype(np.float64) * 0.5 + 1.0)  # statistics unlike the demos'
    ppo = type("P", (), {"policy": policy, "obs_rms": rms, "iterations": 0})()
    reg = BCRegularizer(demos, weight=2.0, decay=0.5, batch=10_000, seed=0)
    zero = torch.zeros(1, 2)
    assert float(reg.loss(None, zero, None).detach()) == 0.0  # before PPO's first update
    reg.on_update_start(ppo)
    z = np.clip((s[:250] - rms.mean) / np.sqrt(rms.var + 1e-8), -10, 10)
    with torch.no_grad():
        pred = policy.actor(torch.as_tensor(z, dtype=torch.float32)).numpy()
    mse = float(np.square(pred - a[:250]).mean())
    got = float(reg.loss(None, zero, None).detach())
    # a batch of 10,000 draws from the 250 acted steps: the mean within a few percent
    assert abs(got - 2.0 * mse) < 0.05 * 2.0 * mse, (got, mse)
    ppo.iterations = 3
    assert reg.weight == 2.0 * 0.5**3
    logs = reg.on_update_end(ppo)
    assert logs["bc_reg_weight"] == 0.25 and abs(logs["bc_reg"] - mse) < 0.05 * mse
    # as PPO's auxiliary loss it trains the actor towards the demos
    opt = torch.optim.Adam(policy.actor.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        reg.loss(None, zero, None).backward()
        opt.step()
    with torch.no_grad():
        pred = policy.actor(torch.as_tensor(z, dtype=torch.float32)).numpy()
    assert np.square(pred - a[:250]).mean() < 0.1 * mse


def test_bad_bc_term_settings_are_refused():
    with pytest.raises(ValueError, match="bc_weight"):
        IRLConfig(task="iltk/Reach-v0", bc_weight=float("nan"))
    with pytest.raises(ValueError, match="bc_decay"):
        IRLConfig(task="iltk/Reach-v0", bc_decay=0.0)
    with pytest.raises(ValueError, match="lr_decay must be a finite number >= 0"):
        TabularIRLSettings(lr_decay=-0.1)
    with pytest.raises(ValueError, match="lr_decay must be a finite number >= 0"):
        tabular_game(
            np.ones((1, 1, 1)),
            np.ones((1, 1)),
            np.ones(1),
            np.ones((1, 1)),
            horizon=1,
            lr_decay=float("nan"),
        )


# ------------------------------------------------------------------ tabular games
def test_the_deep_dual_game_ranks_states_as_exact_maxent_irl():
    env = make_env("iltk/ObjectWorld-v0")
    mdp = env.unwrapped.mdp
    env.close()
    H = mdp.horizon
    _, _, pi_e = soft_value_iteration(mdp.P, mdp.reward, H)
    D, Dcum = state_visitation(mdp.P, pi_e, mdp.init, H)
    expert_sa = (D[:H, :, None] * pi_e).sum(0)
    exact = maxent_irl(mdp.P, mdp.features, mdp.init, Dcum, horizon=H).reward
    settings = RewardPlayerSettings(updates=10, lr=1e-2, l2=0.0, grad_penalty=0.0, hidden=[32, 32])
    dual = tabular_game(
        mdp.P, mdp.features, mdp.init, expert_sa, horizon=H, rounds=150, settings=settings
    )
    assert spearman(dual.reward, exact) > 0.95, spearman(dual.reward, exact)
    # the policy it ends with visits states as the expert does
    first, last = dual.history[0]["visitation_linf"], dual.history[-1]["visitation_linf"]
    assert last < 0.5 * first, (first, last)


def test_the_primal_games_policy_steps_are_soft_policy_improvement():
    # eta = 1 is soft policy iteration: from the uniform policy, repeated steps on a fixed
    # reward reach the soft-optimal policy of soft value iteration
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(5), size=(5, 3))
    r = rng.normal(size=(5, 3))
    _, _, pi_star = soft_value_iteration(P, r, 6)
    pi = np.full((6, 5, 3), 1 / 3)
    for _ in range(8):
        Q = soft_q(P, r, pi, 6, 1.0)
        pi = np.exp(Q - Q.max(-1, keepdims=True))
        pi /= pi.sum(-1, keepdims=True)
    np.testing.assert_allclose(pi, pi_star, atol=1e-8)


def test_a_shaped_reward_recovers_the_true_one_up_to_shaping_on_a_deterministic_chain():
    N, gamma = 8, 0.9
    P = np.zeros((N, 3, N))
    for s in range(N):
        for a, step in enumerate((-1, 0, 1)):
            P[s, a, min(max(s + step, 0), N - 1)] = 1.0
    r = np.array([0.0, 0.2, -0.5, 1.0, 0.3, -1.0, 0.6, 2.0])
    init = np.full(N, 1 / N)
    _, _, pi_e = soft_value_iteration(P, r, None, gamma)
    d, _ = state_visitation(P, pi_e, init, None, gamma)
    settings = RewardPlayerSettings(updates=10, lr=1e-2, l2=0.0, grad_penalty=0.0, hidden=[32, 32])
    res = tabular_game(
        P,
        np.eye(N),
        init,
        d[:, None] * pi_e,
        horizon=None,
        discount=gamma,
        kind="shaped",
        rounds=150,
        settings=settings,
    )
    # g is the true reward up to a constant
    off = res.reward - r
    assert np.corrcoef(res.reward, r)[0, 1] > 0.98
    assert off.max() - off.min() < 0.2 * (r.max() - r.min()), off
    # and the whole f(s, s') is r(s) plus gamma D(s') - D(s) for some potential D
    s_i, a_i, s2_i = np.nonzero(P)
    with torch.no_grad():
        f = res.net(torch.eye(N)[s_i], None, torch.eye(N)[s2_i]).double().numpy()
    M = np.zeros((len(s_i), N))
    M[np.arange(len(s_i)), s2_i] += gamma
    M[np.arange(len(s_i)), s_i] -= 1.0
    potential, *_ = np.linalg.lstsq(M, f - r[s_i], rcond=None)
    assert np.abs(M @ potential - (f - r[s_i])).max() < 0.15 * (r.max() - r.min())
    # its soft-optimal policy is the expert's
    assert np.abs(res.pi - pi_e).max() < 0.1


def test_irl_command_plays_the_game_on_a_tabular_task(tmp_path, capsys):
    from iltk.cli import main as cli_main

    path = tmp_path / "ow.hdf5"
    assert (
        cli_main(
            ["collect", "--task", "iltk/ObjectWorld-v0", "--episodes", "300", "--out", str(path)]
        )
        == 0
    )
    out = tmp_path / "irl"
    # dual: each move of the reward meets the policy's best response, so the first round
    # within tolerance is a fit, not a primal policy passing through on its way
    args = ["irl", "--dataset", str(path), "--out", str(out), "--no-progress", "--game", "dual"]
    args += ["--tabular.solver", "game", "--tabular.tolerance", "0.3", "--tabular.max-iter", "200"]
    args += ["--reward.lr", "1e-2", "--reward.updates", "10", "--reward.grad-penalty", "0"]
    args += ["--reward.l2", "0", "--reward.hidden", "32", "32"]
    assert cli_main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["converged"] and res["visitation_linf"] <= 0.3, res
    assert res["reward_correlation_with_true"] > 0.8, res
    assert "(converged)" in capsys.readouterr().out
