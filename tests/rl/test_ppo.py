"""PPO: GAE by hand, the adaptive-KL rule, the saved normalization, learning on Reach."""

import copy
import json
import math

import numpy as np
import pytest
import torch

import iltk.algos.ppo as ppo_module
from iltk.algos.ppo import train_ppo
from iltk.algos.settings import PPOConfig, PPOSettings
from iltk.cli import main as cli_main
from iltk.policies import load_checkpoint
from iltk.rl.gae import compute_gae
from iltk.rl.loss import gaussian_kl, update_beta
from iltk.rl.ppo import ppo_update
from iltk.rl.stats import RunningMeanStd
from iltk.rl.updaters import TorchUpdater
from iltk.training import Optimization


def test_gae_by_hand_with_termination_and_truncation():
    """One env, 5 steps: an episode truncated at t=1, one terminated at t=3, one running."""
    g, lam = 0.9, 0.5
    r = np.array([1.0, 2.0, 0.5, 1.0, 3.0])[:, None]
    v = np.array([0.5, 1.0, 2.0, 1.5, 0.2])[:, None]
    term = np.array([0, 0, 0, 1, 0], bool)[:, None]
    trunc = np.array([0, 1, 0, 0, 0], bool)[:, None]
    final = np.array([0.0, 4.0, 0.0, 0.0, 0.0])[:, None]  # V of the truncated step's final obs
    last = np.array([0.7])
    adv, ret = compute_gae(r, v, term, trunc, final, last, g, lam)
    # by hand, from the end
    d4 = 3.0 + g * 0.7 - 0.2  # bootstraps from the observation after the rollout
    d3 = 1.0 + 0.0 - 1.5  # terminated: no bootstrap
    d2 = 0.5 + g * 1.5 - 2.0
    d1 = 2.0 + g * 4.0 - 1.0  # truncated: bootstraps from the final observation
    d0 = 1.0 + g * 1.0 - 0.5
    a4, a3 = d4, d3  # a new episode starts after t=3: no carry-over from t=4
    a2 = d2 + g * lam * a3
    a1 = d1  # the episode ended at t=1: nothing carries over from t=2
    a0 = d0 + g * lam * a1
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2, a3, a4], rtol=1e-12)
    np.testing.assert_allclose(ret, adv + v, rtol=1e-12)
    # lambda = 1, gamma = 1, no ends: advantage = Monte-Carlo return + bootstrap - V
    z = np.zeros((3, 1), bool)
    adv1, _ = compute_gae(
        np.ones((3, 1)), np.zeros((3, 1)), z, z, np.zeros((3, 1)), np.array([5.0]), 1.0, 1.0
    )
    np.testing.assert_allclose(adv1[:, 0], [8.0, 7.0, 6.0])


def test_adaptive_kl_rule():
    assert update_beta(1.0, 0.001, 0.01) == 0.5  # KL < d_targ / 1.5: halve
    assert update_beta(1.0, 0.02, 0.01) == 2.0  # KL > 1.5 d_targ: double
    assert update_beta(1.0, 0.01, 0.01) == 1.0
    assert update_beta(1.0, 0.0067, 0.01) == 1.0 and update_beta(1.0, 0.0149, 0.01) == 1.0


def test_gaussian_kl_matches_torch():
    torch.manual_seed(0)
    mp, mq = torch.randn(7, 3), torch.randn(7, 3)
    sp, sq = torch.randn(3) * 0.3, torch.randn(3) * 0.3
    ours = gaussian_kl(mp, sp, mq, sq)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mp, sp.exp()), torch.distributions.Normal(mq, sq.exp())
    ).sum(-1)
    torch.testing.assert_close(ours, ref)


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(300, 4))
    rms = RunningMeanStd(4)
    for chunk in np.array_split(data, 17):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-4)
    one = RunningMeanStd(4)  # one row at a time (one env): the same statistics
    for row in data:
        one.update(row[None])
    np.testing.assert_allclose(one.mean, data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(one.var, data.var(0), rtol=1e-4)


@pytest.fixture(scope="module")
def reach_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo") / "reach"
    cfg = PPOConfig(
        task="iltk/Reach-v0",
        total_timesteps=32768,
        out=out,
        eval_every=16384,
        eval_episodes=10,
        progress=False,
        seed=0,
    )
    return out, train_ppo(cfg)


@pytest.mark.expensive
def test_ppo_learns_reach(reach_run):
    out, res = reach_run
    evals = [row for row in _rows(out) if row["kind"] == "eval"]
    first, last = float(evals[0]["eval_return"]), float(evals[-1]["eval_return"])
    assert res["final"]["eval_success"] >= 0.8, res
    assert last > first, (first, last)
    for name in ("config.json", "metrics.csv", "results.json", "plots/return.png"):
        assert (out / name).exists(), name
    assert (out / "best" / "model.safetensors").exists() and (
        out / "last" / "train_state.pt"
    ).exists()
    # where the time went: rollouts and updates, each a real share of the run
    train = [row for row in _rows(out) if row["kind"] == "train"]
    assert all(float(r["collect_s"]) > 0 and float(r["update_s"]) > 0 for r in train)
    assert 0 < res["collect_s"] and 0 < res["update_s"]
    assert res["collect_s"] + res["update_s"] < res["train_time_s"]
    assert res["collect_s"] == pytest.approx(sum(float(r["collect_s"]) for r in train), rel=1e-6)


def _rows(out):
    import csv

    return list(csv.DictReader((out / "metrics.csv").open()))


@pytest.mark.expensive
def test_saved_normalization_is_used_on_load(reach_run, capsys):
    out, _ = reach_run
    policy, extra = load_checkpoint(out / "best")
    assert extra["task"] == "iltk/Reach-v0"
    assert bool(policy.obs_normalized) and policy.obs_var.min() > 0
    state = torch.as_tensor(
        np.random.default_rng(0).normal(size=(4, policy.config.state_dim)), dtype=torch.float32
    )
    z = ((state - policy.obs_mean) / torch.sqrt(policy.obs_var + 1e-8)).clamp(-10, 10)
    torch.testing.assert_close(policy.predict({"state": state}), policy.actor(z))
    # without the statistics the same weights act differently: they are not decoration
    policy.set_obs_stats(None, None)
    assert not torch.allclose(policy.predict({"state": state}), policy.actor(z))
    # iltk eval loads the checkpoint as it was trained and succeeds
    assert (
        cli_main(
            [
                "eval",
                "--policy",
                str(out / "best"),
                "--episodes",
                "10",
                "--num-envs",
                "1",
                "--json",
                str(out / "eval.json"),
            ]
        )
        == 0
    )
    assert json.loads((out / "eval.json").read_text())["success_rate"] >= 0.8


def test_kl_penalty_objective_adapts_beta(tmp_path):
    res = train_ppo(
        PPOConfig(
            task="Pendulum-v1",
            total_timesteps=4096,
            ppo=PPOSettings(n_steps=512, objective="kl-penalty", kl_target=0.001, kl_beta=1.0),
            out=tmp_path / "kl",
            eval_every=0,
            eval_episodes=0,
            progress=False,
        )
    )
    assert res["env_steps"] == 4096
    betas = [float(r["beta"]) for r in _rows(tmp_path / "kl") if r["kind"] == "train"]
    kls = [float(r["kl"]) for r in _rows(tmp_path / "kl") if r["kind"] == "train"]
    # each logged beta follows the rule from the previous one and that update's KL
    beta = 1.0
    for kl, logged in zip(kls, betas):
        beta = update_beta(beta, kl, 0.001)
        assert logged == pytest.approx(beta)
    assert len(set(betas)) > 1
    assert all(math.isfinite(k) for k in kls)


def test_resume_continues_and_bad_settings_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "ppo",
        "--task",
        "Pendulum-v1",
        "--ppo.n-steps",
        "256",
        "--eval-episodes",
        "0",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert cli_main([*args, "--total-timesteps", "512"]) == 0
    assert cli_main([*args, "--total-timesteps", "512"]) == 2  # an earlier run: refused
    assert cli_main([*args, "--total-timesteps", "1024", "--resume"]) == 0
    steps = [int(r["step"]) for r in _rows(out) if r["kind"] == "train"]
    assert steps == [256, 512, 768, 1024]
    # refused while parsing, before any work, in one line
    assert cli_main([*args, "--total-timesteps", "0", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "iltk: error: total_timesteps must be >= 1, got 0"
    assert steps == [int(r["step"]) for r in _rows(out) if r["kind"] == "train"]  # untouched
    assert cli_main(["ppo", "--task", "iltk/NoSuch-v0", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_async_envs_and_state_dict_observations(tmp_path):
    """Several envs in subprocesses; the rollout size is n_steps * num_envs."""
    res = train_ppo(
        PPOConfig(
            task="iltk/Reach-v0",
            total_timesteps=512,
            ppo=PPOSettings(n_steps=128, num_envs=2, async_envs=True, batch_size=64),
            out=tmp_path / "a",
            eval_every=0,
            eval_episodes=2,
            progress=False,
        )
    )
    assert res["env_steps"] == 512
    steps = [int(r["step"]) for r in _rows(tmp_path / "a") if r["kind"] == "train"]
    assert steps == [256, 512]


def test_ppo_trains_on_a_saved_learned_reward(tmp_path, capsys):
    from iltk.rewards import RewardConfig, RewardError, RewardNet, load_reward

    net = RewardNet(RewardConfig(obs_dim=3, hidden=[]))  # Pendulum: cos, sin, angular velocity
    with torch.no_grad():
        net.net[0].weight.zero_()
        net.net[0].bias.fill_(1.0)  # a constant reward of 1 per step
    net.save(tmp_path / "reward")
    back = load_reward(tmp_path / "reward")
    obs = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(back.rewards(obs), net.rewards(obs))
    np.testing.assert_allclose(back.rewards(obs), 1.0)
    train_ppo(
        PPOConfig(
            task="Pendulum-v1",
            total_timesteps=1024,
            ppo=PPOSettings(n_steps=512, normalize_reward=False),
            out=tmp_path / "run",
            reward=tmp_path / "reward",
            eval_every=0,
            eval_episodes=0,
            progress=False,
        )
    )
    rows = [r for r in _rows(tmp_path / "run") if r["kind"] == "train"]
    assert [float(r["learned_reward"]) for r in rows] == [1.0, 1.0]
    assert all(float(r["ep_return"]) < 0 for r in rows if r["ep_return"])  # the env's, logged
    # a reward of another task's shape is refused before any work
    RewardNet(RewardConfig(obs_dim=7)).save(tmp_path / "other")
    assert (
        cli_main(
            [
                "ppo",
                "--task",
                "Pendulum-v1",
                "--reward",
                str(tmp_path / "other"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "another task" in capsys.readouterr().err and not (tmp_path / "x").exists()
    (tmp_path / "other" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(RewardError, match="damaged"):
        load_reward(tmp_path / "other")
    with pytest.raises(RewardError, match="not a reward"):
        load_reward(tmp_path)


@pytest.mark.parametrize("objective", ["clip", "kl-penalty"])
def test_compiled_update_matches_eager(objective, small_policy):
    """--ppo.compile runs the same update: from the same weights and batch, the compiled
    step (torch.func gradients, the clip and torch's Adam kernel in one graph) and the
    eager one end at the same weights and Adam moments, with an actor and a critic
    learning rate, a linear schedule and an auxiliary loss on the actor; a checkpoint of
    the compiled run's optimizer resumes an eager one."""
    start = small_policy()
    n = 128  # two 64-sample minibatches
    obs = torch.randn(n, 5)
    with torch.no_grad():
        mean = start.actor(obs)
    actions = mean + 0.5 * torch.randn(n, 2)
    batch = {
        "obs": obs,
        "actions": actions,
        "mean": mean,
        "logp": torch.randn(n) - 2,
        "advantages": torch.randn(n),
        "returns": torch.randn(n),
        "values": torch.randn(n),
        "old_log_std": start.log_std.detach().clone(),
    }

    def pull(obs, mean, log_std):  # an auxiliary loss, as fine-tuning's towards its start
        return 0.1 * (mean**2).mean() + 0.01 * log_std.pow(2).sum()

    after, moments, updaters = [], [], []
    for compile_ in (False, True):
        policy = copy.deepcopy(start)
        cfg = PPOSettings(n_epochs=2, objective=objective, compile=compile_, batch_size=64)
        optim = Optimization(
            [
                {"params": policy.actor_parameters(), "lr": 1e-3},
                {"params": policy.critic_parameters(), "lr": 3e-3},
            ],
            lr=1e-3,
            total_steps=8,
            schedule="linear",
            grad_clip=0.5,
            eps=1e-5,
            amp=False,
        )
        updater = TorchUpdater(policy, optim, compile=compile_, aux_losses=[pull])
        ppo_update(policy, updater, batch, cfg, 1.0, torch.Generator().manual_seed(0))
        after.append(torch.cat([p.detach().reshape(-1) for p in policy.parameters()]))
        state = optim.opt.state
        moments.append(torch.cat([state[p]["exp_avg_sq"].reshape(-1) for p in optim.params]))
        updaters.append((policy, optim, updater))
    assert updaters[1][2].compiled is not None  # the compiled path ran
    moved = torch.cat([p.detach().reshape(-1) for p in start.parameters()])
    assert (after[0] - moved).abs().max() > 1e-3
    torch.testing.assert_close(after[1], after[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(moments[1], moments[0], rtol=1e-4, atol=1e-9)
    assert updaters[1][1].lr == pytest.approx(updaters[0][1].lr)  # the schedule moved as much
    # the compiled run's optimizer state, saved and loaded, continues an eager update
    policy, optim, _ = updaters[1]
    eager_policy, eager_optim, eager = updaters[0]
    optim.load_state_dict(copy.deepcopy(eager_optim.state_dict()))  # as from a file
    cfg = PPOSettings(n_epochs=1, objective=objective, batch_size=64)
    for pol, upd in [(eager_policy, eager), (policy, updaters[1][2])]:
        ppo_update(pol, upd, batch, cfg, 1.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        torch.cat([p.detach().reshape(-1) for p in policy.parameters()]),
        torch.cat([p.detach().reshape(-1) for p in eager_policy.parameters()]),
        rtol=1e-4,
        atol=1e-5,
    )


def test_compile_without_a_compiler_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(ppo_module.shutil, "which", lambda name: None)
    out = tmp_path / "run"
    args = [
        "ppo",
        "--task",
        "Pendulum-v1",
        "--total-timesteps",
        "64",
        "--out",
        str(out),
        "--ppo.compile",
    ]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "C++ compiler" in err[0] and "without --ppo.compile" in err[0]
    assert not out.exists()


def test_a_saved_reward_holds_an_ended_episodes_final_state_to_the_horizon(tmp_path):
    from types import SimpleNamespace

    from iltk.rewards import RewardConfig, RewardNet
    from iltk.rl.rewards import SavedReward

    net = RewardNet(RewardConfig(obs_dim=2, hidden=[], kind="shaped", gamma=0.5))
    with torch.no_grad():
        net.net[0].weight.copy_(torch.tensor([[1.0, 0.0]]))  # g(s) = s_0
        net.net[0].bias.zero_()
        net.h[0].weight.fill_(3.0)  # a potential that g alone leaves out
    net.save(tmp_path / "reward")
    source = SavedReward(tmp_path / "reward", "iltk/Reach-v0")
    source.prepare(2, 1, horizon=10)
    final = np.array([[2.0, 5.0], [-1.0, 0.0]])
    held = source.absorbing(SimpleNamespace(), np.array([0, 1]), final, np.array([4, 9]))
    np.testing.assert_allclose(held.reward, [2.0, -1.0])  # g of the final state
    np.testing.assert_array_equal(held.steps, [6, 1])  # the steps left to the horizon
    full = SavedReward(tmp_path / "reward", "iltk/Reach-v0", part="full")
    full.prepare(2, 1, horizon=None)
    held = full.absorbing(SimpleNamespace(), np.array([0]), final[:1], np.array([4]))
    # f(s, s) = g(s) + (gamma - 1) h(s), h on the normalized state
    x = (final[:1] - net.obs_mean.numpy()) / net.obs_std.numpy()
    h = 3.0 * x.sum() + float(net.h[0].bias.detach())
    np.testing.assert_allclose(held.reward, [2.0 - 0.5 * h], rtol=1e-5)
    assert held.steps is None  # no time limit: held forever
