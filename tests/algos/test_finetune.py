"""PPO fine-tuning of BC policies (`iltk finetune`)."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from iltk.algos.finetune import FinetuneError, finetune
from iltk.algos.settings import ChunkExecution, FinetuneSettings, PPOSettings, TrainConfig
from iltk.algos.supervised import train
from iltk.cli import main as cli_main
from iltk.collect import collect_demos
from iltk.data import DemoFile
from iltk.policies import load_policy, set_chunk_execution
from iltk.policies.tuned import FinetunePolicy


@pytest.fixture(scope="module")
def bc_reach(tmp_path_factory):
    """BC on 8 Reach demos: it succeeds about a third of the time, room to improve."""
    root = tmp_path_factory.mktemp("ft")
    data = root / "reach8.hdf5"
    collect_demos("iltk/Reach-v0", data, 8, progress=False)
    train(
        TrainConfig(
            algo="bc", dataset=data, out=root / "bc", steps=2000, eval_episodes=0, progress=False
        )
    )
    return root, data


def _evals(out):
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return [(int(r["step"]), float(r["eval_success"])) for r in rows if r["kind"] == "eval"]


def _states(data):
    with DemoFile(data) as f:
        return np.concatenate([f.read(d, "obs/state") for d in f.demos]).astype(np.float32)


def _ppo(**settings) -> PPOSettings:
    """Fine-tuning's PPO settings with these changed."""
    return dataclasses.replace(FinetuneSettings().ppo, **settings)


def test_the_start_is_the_bc_policy_and_the_warm_up_leaves_it_alone(bc_reach, tmp_path):
    root, data = bc_reach
    bc = load_policy(root / "bc" / "last")
    ft = FinetunePolicy.from_base(bc, "bc")
    obs = {"state": torch.as_tensor(_states(data))}
    np.testing.assert_array_equal(ft.predict(obs).numpy(), bc.predict(obs).numpy())
    # every rollout a warm-up one: the actor is exactly the BC policy after training
    out = tmp_path / "warm"
    cfg = FinetuneSettings(
        policy=root / "bc" / "last",
        out=out,
        total_timesteps=2048,
        ppo=_ppo(n_steps=512),
        critic_warmup_rollouts=10,
        eval_every=0,
        eval_episodes=0,
        progress=False,
    )
    finetune(cfg)
    tuned = load_policy(out / "last")
    assert isinstance(tuned, FinetunePolicy)
    np.testing.assert_array_equal(tuned.predict(obs).numpy(), bc.predict(obs).numpy())
    fresh = FinetunePolicy.from_base(bc, "bc")
    assert not torch.equal(tuned.critic[1][0].weight, fresh.critic[1][0].weight)


def test_first_update_after_the_warm_up_changes_the_actions_little(bc_reach, tmp_path):
    root, data = bc_reach
    bc = load_policy(root / "bc" / "last")
    out = tmp_path / "one"
    cfg = FinetuneSettings(
        policy=root / "bc" / "last",
        out=out,
        total_timesteps=3 * 512,
        ppo=_ppo(n_steps=512),
        critic_warmup_rollouts=2,
        eval_every=0,
        eval_episodes=0,
        progress=False,
    )
    finetune(cfg)
    tuned = load_policy(out / "last")
    obs = {"state": torch.as_tensor(_states(data))}
    change = (tuned.predict(obs) - bc.predict(obs)).abs().max(-1).values
    assert float(change.max()) > 0  # the actor did move...
    assert float(change.mean()) < 0.02, float(change.mean())  # ...a little, on its own data
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["warmup"] for r in rows if r["kind"] == "train"] == ["1.0", "1.0", "0.0"]


@pytest.mark.expensive
def test_finetuning_improves_success_on_reach(bc_reach, tmp_path, capsys):
    root, _ = bc_reach
    out = tmp_path / "ft"
    args = ["finetune", "--policy", str(root / "bc" / "last"), "--out", str(out)]
    args += ["--total-timesteps", "20480", "--ppo.n-steps", "1024", "--eval-every", "10240"]
    args += ["--eval-episodes", "50", "--no-progress"]
    assert cli_main(args) == 0
    assert "(start) ->" in capsys.readouterr().out
    evals = _evals(out)
    assert evals[0][0] == 0 and len(evals) == 3
    start, later = evals[0][1], [s for _, s in evals[1:]]
    assert max(later) >= start + 0.1, evals
    for name in ("best", "last", "plots/success.png", "plots/return.png"):
        assert (out / name).exists(), name
    assert (
        cli_main(["eval", "--policy", str(out / "best"), "--episodes", "2", "--num-envs", "1"]) == 0
    )


def test_the_pull_towards_the_start_keeps_the_actor_near_it(bc_reach, tmp_path):
    """The same fast updates (actor lr 1e-3, clip 0.2) with and without a strong KL
    penalty towards the BC policy plus DAPG's BC term: the penalized actor moves less."""
    root, data = bc_reach
    bc = load_policy(root / "bc" / "last")
    obs = {"state": torch.as_tensor(_states(data))}
    change = {}
    for name, pull in (("free", {}), ("pulled", {"kl_bc": 100.0, "bc_weight": 1.0})):
        out = tmp_path / name
        cfg = FinetuneSettings(
            policy=root / "bc" / "last",
            out=out,
            total_timesteps=4 * 512,
            ppo=_ppo(n_steps=512, lr=1e-3, clip_range=0.2),
            critic_warmup_rollouts=1,
            eval_every=0,
            eval_episodes=0,
            progress=False,
            **pull,
        )
        finetune(cfg)
        tuned = load_policy(out / "last")
        change[name] = float((tuned.predict(obs) - bc.predict(obs)).abs().mean())
        rows = [r for r in csv.DictReader((out / "metrics.csv").open()) if r["kind"] == "train"]
    assert change["pulled"] < 0.5 * change["free"], change
    # the BC term decays per rollout (0.95^k) and both terms were logged
    weights = [float(r["bc_weight"]) for r in rows]
    np.testing.assert_allclose(weights[1:], [0.95**k for k in range(1, 4)])
    assert all(r["bc_loss"] and r["kl_to_start"] for r in rows[1:])


@pytest.fixture(scope="module")
def act_reach(bc_reach):
    root, data = bc_reach
    from iltk.policies.act import ACTConfig

    train(
        TrainConfig(
            algo="act",
            dataset=data,
            out=root / "act",
            steps=30,
            batch_size=16,
            act=ACTConfig(d_model=32, dim_feedforward=64, chunk_size=8),
            eval_episodes=0,
            progress=False,
        )
    )
    return root / "act" / "last"


def test_a_zero_residual_reproduces_the_frozen_chunk_policy_exactly(act_reach):
    """Over whole episodes in 2 envs, with temporal ensembling: the residual policy and
    its base act identically before training (the residual's last layer is zero)."""
    from iltk.envs import make_vector_env
    from iltk.policies.runners import PolicyRunner
    from iltk.policies.tuned import ResidualPolicy

    base = load_policy(act_reach)
    set_chunk_execution(base, temporal_ensemble=True)  # the runner's most stateful case
    res = ResidualPolicy.from_base(base, "act")
    res.set_obs_stats(np.ones(base.config.state_dim + 3), np.full(base.config.state_dim + 3, 4.0))
    for (k, v), (_, w) in zip(base.state_dict().items(), res.base.state_dict().items()):
        assert torch.equal(v, w), k  # the base's weights, copied
    # the same module underneath (two copies of a transformer may differ in the last bit
    # with oneDNN's kernel choice, which is not what this test is about)
    runners = [PolicyRunner(res.base, 2), PolicyRunner(res, 2)]
    envs = make_vector_env("iltk/Reach-v0", 2, asynchronous=False, terminate_on_success=False)
    obs, _ = envs.reset(seed=[5, 6])
    for r in runners:
        r.reset()
    for _ in range(30):
        a_base, a_res = (r.act(obs) for r in runners)
        np.testing.assert_array_equal(a_base, a_res)
        obs, *_ = envs.step(a_base)
    envs.close()


def test_an_act_policy_is_finetuned_through_a_residual(act_reach, tmp_path):
    from iltk.policies.tuned import ResidualPolicy

    out = tmp_path / "act_ft"
    args = ["finetune", "--policy", str(act_reach), "--out", str(out), "--total-timesteps", "1024"]
    args += [
        "--ppo.n-steps",
        "256",
        "--critic-warmup-rollouts",
        "1",
        "--eval-episodes",
        "2",
        "--no-progress",
    ]
    args += ["--chunk.temporal-ensemble", "True"]  # trained to act with a fresh chunk a step
    assert cli_main(args) == 0
    tuned = load_policy(out / "last")
    assert isinstance(tuned, ResidualPolicy) and tuned.config.base == "act"
    assert tuned.base.config.temporal_ensemble  # the residual acts on the ensembled base
    assert not load_policy(act_reach).config.temporal_ensemble  # the BC checkpoint: untouched
    # the base stayed frozen; the residual moved
    base = load_policy(act_reach)
    for (k, v), (_, w) in zip(base.state_dict().items(), tuned.base.state_dict().items()):
        assert torch.equal(v, w), k
    assert tuned.residual.actor[-1].weight.abs().sum() > 0
    assert bool(tuned.residual.obs_normalized)  # PPO's statistics of (state, base action)
    assert (
        cli_main(["eval", "--policy", str(out / "last"), "--episodes", "2", "--num-envs", "2"]) == 0
    )
    # the plain ACT evaluated open-loop, 3 actions a chunk: the JSON says how it acted
    args = ["eval", "--policy", str(act_reach), "--episodes", "2", "--chunk.n-action-steps", "3"]
    assert cli_main([*args, "--json", str(tmp_path / "e.json")]) == 0
    record = json.loads((tmp_path / "e.json").read_text())
    assert record["chunk_execution"] == {"n_action_steps": 3} and record["episodes"] == 2


def test_a_gmm_head_is_finetuned_itself_or_whole_under_a_residual(bc_reach, tmp_path, capsys):
    """By default the GMM's MLP is PPO's actor at its most likely component's mean;
    --mode residual keeps the mixture whole under a zero residual that acts exactly as it."""
    from iltk.envs import make_vector_env
    from iltk.policies.runners import PolicyRunner
    from iltk.policies.tuned import ResidualPolicy

    root, data = bc_reach
    args = ["train", "--algo", "bc", "--dataset", str(data), "--out", str(root / "gmm")]
    args += ["--bc.head", "gmm", "--bc.hidden", "32", "32", "--steps", "200"]
    assert cli_main([*args, "--eval-episodes", "0", "--no-progress"]) == 0
    gmm = root / "gmm" / "last"
    base = load_policy(gmm)
    obs = {"state": torch.as_tensor(_states(data)[:200])}
    common = ["--ppo.n-steps", "256", "--eval-every", "0", "--eval-episodes", "0", "--no-progress"]
    out = tmp_path / "whole"
    args = ["finetune", "--policy", str(gmm), "--out", str(out), "--total-timesteps", "768"]
    assert cli_main([*args, *common, "--critic-warmup-rollouts", "1"]) == 0
    tuned = load_policy(out / "last")
    assert isinstance(tuned, FinetunePolicy) and tuned.base.config.head == "gmm"
    assert not np.array_equal(tuned.predict(obs).numpy(), base.predict(obs).numpy())
    # every rollout a warm-up one: what is saved is the start
    out = tmp_path / "res"
    args = ["finetune", "--policy", str(gmm), "--out", str(out), "--total-timesteps", "512"]
    assert cli_main([*args, *common, "--critic-warmup-rollouts", "4", "--mode", "residual"]) == 0
    tuned = load_policy(out / "last")
    assert isinstance(tuned, ResidualPolicy) and tuned.base.config.head == "gmm"
    runners = [PolicyRunner(base, 2), PolicyRunner(tuned, 2)]
    envs = make_vector_env("iltk/Reach-v0", 2, asynchronous=False, terminate_on_success=False)
    o, _ = envs.reset(seed=[3, 4])
    for _ in range(20):
        a_base, a_tuned = (r.act(o) for r in runners)
        np.testing.assert_array_equal(a_base, a_tuned)
        o, *_ = envs.step(a_base)
    envs.close()
    # a residual's base is frozen: the BC term has nothing to clone, and says what to do
    args = ["finetune", "--policy", str(gmm), "--out", str(tmp_path / "o"), "--bc-weight", "0.1"]
    assert cli_main([*args, "--mode", "residual"]) != 0
    assert "--mode whole" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_what_cannot_be_finetuned_is_refused(bc_reach, act_reach, tmp_path, capsys):
    root, data = bc_reach
    from iltk.policies import make_policy
    from iltk.policies.configs import ActorCriticConfig

    ppo = make_policy("actor-critic", ActorCriticConfig(state_dim=9, action_dim=3))
    ppo.save(tmp_path / "ppo", {"task": "iltk/Reach-v0"})
    with pytest.raises(FinetuneError, match="behaviour-cloned"):
        finetune(FinetuneSettings(policy=tmp_path / "ppo", out=tmp_path / "o"))
    assert cli_main(["finetune", "--policy", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert "no such checkpoint" in capsys.readouterr().err
    with pytest.raises(FinetuneError, match="predicts no action chunks"):
        finetune(
            FinetuneSettings(
                policy=root / "bc" / "last",
                out=tmp_path / "o",
                chunk=ChunkExecution(n_action_steps=1),
            )
        )
    assert not (tmp_path / "o").exists()
    with pytest.raises(FinetuneError, match="residual only"):
        finetune(FinetuneSettings(policy=act_reach, out=tmp_path / "o", mode="whole"))
    with pytest.raises(ValueError, match="min_log_std"):
        FinetuneSettings(log_std_init=0.0)


def test_a_bc_policy_is_finetuned_on_a_learned_reward(bc_reach, tmp_path):
    """`iltk finetune --reward DIR` (the last step of the IRL recipe: BC fine-tuned on the
    reward a game ended on) trains on that reward, not on the task's: a saved reward of 1
    per step is every rollout's learned reward, while the env's own returns are logged
    beside it, and the start is BC's own actor."""
    from iltk.rewards import RewardConfig, RewardNet

    root, data = bc_reach
    net = RewardNet(RewardConfig(obs_dim=9, hidden=[]))  # Reach-v0's 9 values
    with torch.no_grad():
        net.net[0].weight.zero_()
        net.net[0].bias.fill_(1.0)
    net.save(tmp_path / "reward")
    out = tmp_path / "ft"
    cfg = FinetuneSettings(
        policy=root / "bc" / "last",
        reward=tmp_path / "reward",
        out=out,
        total_timesteps=3 * 512,
        ppo=_ppo(n_steps=512, normalize_reward=False),
        critic_warmup_rollouts=1,
        eval_every=0,
        eval_episodes=2,
        progress=False,
    )
    finetune(cfg)
    rows = [r for r in csv.DictReader((out / "metrics.csv").open()) if r["kind"] == "train"]
    assert [float(r["learned_reward"]) for r in rows] == [1.0, 1.0, 1.0]
    assert all(float(r["ep_return"]) < 0 for r in rows if r["ep_return"])  # the env's
    assert json.loads((out / "config.json").read_text())["reward"] == str(tmp_path / "reward")
    assert type(load_policy(out / "last")).name == "finetune"  # what `iltk eval` loads
