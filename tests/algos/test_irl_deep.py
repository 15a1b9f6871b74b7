"""Deep MaxEnt IRL (the game) and the `iltk irl` command."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from iltk.algos.irl.deep import Demonstrations, RewardPlayer, load_demonstrations
from iltk.algos.settings import IRLConfig, RewardPlayerSettings
from iltk.cli import main as cli_main
from iltk.data import DatasetError
from iltk.envs import make_env


def test_ended_demos_are_padded_to_the_horizon_with_their_final_state(reach_demos):
    plain = load_demonstrations(reach_demos, "iltk/Reach-v0")
    padded = load_demonstrations(reach_demos, "iltk/Reach-v0", horizon=100)
    lengths = [len(e) for e in plain.episodes]
    assert all(n < 100 for n in lengths) and len(plain.states) == sum(lengths)
    total = 100 * len(lengths)  # every demo padded to the horizon
    assert len(padded.states) == total and padded.padded == total - sum(lengths)
    from iltk.data import DemoFile

    with DemoFile(reach_demos) as f:
        final = f.read(f.demos[0], "next_obs/state")[-1]
    ep = padded.episodes[0]
    np.testing.assert_array_equal(ep[: lengths[0]], plain.episodes[0])
    np.testing.assert_allclose(ep[lengths[0] :], np.repeat(final[None], 100 - lengths[0], 0))
    assert padded.seeds == list(range(len(lengths)))
    one = load_demonstrations(reach_demos, "iltk/Reach-v0", limit=1)
    assert len(one.episodes) == 1
    with pytest.raises(DatasetError, match="PointMaze"):
        load_demonstrations(reach_demos, "iltk/PointMaze-v0")
    with pytest.raises(DatasetError, match="fewer than --demos 5"):
        load_demonstrations(reach_demos, "iltk/Reach-v0", limit=5)


def _separated(**settings):
    """A reward player after one move on demonstrations at +1 on the first coordinate
    against a policy at -1 (the second coordinate is noise on both sides)."""
    rng = np.random.default_rng(0)
    expert = np.c_[np.ones(500), rng.normal(size=500)].astype(np.float32)
    policy = np.c_[-np.ones(500), rng.normal(size=500)].astype(np.float32)
    demos = Demonstrations(expert, np.zeros((500, 1), np.float32), [expert], [0], 0, {})
    cfg = IRLConfig(task="iltk/Reach-v0", reward=RewardPlayerSettings(updates=300, **settings))
    player = RewardPlayer(cfg, demos, "cpu")
    player.prepare(2, 1)
    net = player.net
    logs = player.update(policy, np.zeros((500, 1), np.float32))
    line = np.c_[np.linspace(-1, 1, 21), np.zeros(21)].astype(np.float32)
    return logs, net.rewards(expert).mean(), net.rewards(policy).mean(), net.rewards(line)


def test_the_reward_player_raises_demo_states_against_the_policys():
    # L2 alone: a step between the sets, as high as the penalty lets it be (the
    # optimum of gap - 0.05 (r_e^2 + r_p^2) is r = +-10)
    logs, r_e, r_p, line = _separated(l2=0.05, grad_penalty=0.0)
    assert logs["reward_gap"] > 10.0 and r_e > r_p + 10.0, logs
    assert max(abs(r_e), abs(r_p)) < 12.0
    # with the gradient penalty: 1-Lipschitz in the normalized input (the sets lie 2 apart
    # there: the first coordinate's std over both is 1), so a slope of about 1 per unit
    # that rises all the way from the policy's states to the demonstrations'
    logs, r_e, r_p, line = _separated(l2=0.01, grad_penalty=10.0)
    assert 1.0 < r_e - r_p < 2.6, (r_e, r_p)
    steps = np.diff(line)
    assert (steps > 0).all(), line
    assert steps.max() < 0.2, steps  # no step: 21 points 0.1 apart, slope about 1


@pytest.mark.parametrize("task", ["iltk/Reach-v0", "iltk/PointMaze-v0", "iltk/Push-v0"])
def test_heatmap_observations_move_one_thing_and_restore_the_scene(task):
    env = make_env(task)
    u = env.unwrapped
    env.reset(seed=3)
    before, state = u._state_obs().copy(), u.get_state()
    x0, x1, y0, y1 = u.heatmap_extent()
    xs, ys = np.linspace(x0, x1, 4), np.linspace(y0, y1, 3)
    obs = u.heatmap_observations(xs, ys)
    assert obs.shape == (3, 4, u.state_dim)
    xy = obs[..., u.heatmap_obs_xy]
    np.testing.assert_allclose(xy[..., 0], np.broadcast_to(xs, (3, 4)), atol=1e-9)
    np.testing.assert_allclose(xy[..., 1], np.broadcast_to(ys[:, None], (3, 4)), atol=1e-9)
    np.testing.assert_array_equal(u._state_obs(), before)
    np.testing.assert_array_equal(u.get_state(), state)
    env.close()


def test_irl_command_writes_a_reward_ppo_trains_on_and_a_policy_eval_loads(
    reach_demos, tmp_path, capsys
):
    from iltk.policies import load_policy
    from iltk.rewards import load_reward

    out = tmp_path / "irl"
    args = ["irl", "--dataset", str(reach_demos), "--out", str(out), "--no-progress"]
    args += ["--total-timesteps", "1024", "--ppo.n-steps", "256", "--eval-every", "512"]
    args += ["--eval-episodes", "2", "--reward.updates", "3", "--bc-steps", "200"]
    args_irl = list(args)
    assert cli_main(args) == 0
    said = capsys.readouterr().out
    assert "iltk ppo --reward" in said and "never trained on" in said
    reward = load_reward(out / "reward")
    assert reward.config.obs_dim == 9 and reward.config.kind == "s"
    policy = load_policy(out / "policy")
    assert policy.config.state_dim == 9
    res = json.loads((out / "results.json").read_text())
    assert res["demos"] == 4 and res["demo_states"] == 400
    assert (out / "plots" / "reward_heatmap.png").stat().st_size > 10_000
    assert not (out / "best").exists()  # nothing chosen by the env's reward
    rows = (out / "metrics.csv").read_text().splitlines()
    assert "reward_gap" in rows[0] and len(rows) > 4
    # the two consumers of its outputs
    assert (
        cli_main(["eval", "--policy", str(out / "policy"), "--episodes", "2", "--num-envs", "1"])
        == 0
    )
    ppo = tmp_path / "ppo"
    args = ["ppo", "--task", "iltk/Reach-v0", "--reward", str(out / "reward")]
    args += ["--out", str(ppo), "--total-timesteps", "512", "--ppo.n-steps", "256", "--no-progress"]
    args += ["--eval-episodes", "1"]
    assert cli_main(args) == 0
    # a second run does not write over the first without --overwrite
    capsys.readouterr()
    assert cli_main(["irl", "--dataset", str(reach_demos), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "earlier run" in err and "pass --resume to continue it" in err
    # --resume goes on with the reward player where it was: its updates count on from 4
    assert json.loads((out / "reward" / "config.json").read_text())["extra"]["updates"] == 4
    weights = reward.state_dict()
    resumed = [a if a != "1024" else "1536" for a in args_irl] + ["--resume"]
    assert cli_main(resumed) == 0
    assert json.loads((out / "reward" / "config.json").read_text())["extra"]["updates"] == 6
    moved = load_reward(out / "reward").state_dict()
    assert any(not torch.equal(weights[k], moved[k]) for k in weights)
    steps = [int(r.split(",")[0]) for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps) and max(steps) == 1536


def test_irl_command_on_a_tabular_task(tmp_path, capsys):
    path = tmp_path / "ow.hdf5"  # through the command line, as the README's tour does
    args = ["collect", "--task", "iltk/ObjectWorld-v0", "--episodes", "200", "--out", str(path)]
    assert cli_main(args) == 0
    said = capsys.readouterr().out
    assert "expert's mean return" in said and "success" not in said  # tabular: no success
    assert cli_main(args + ["--success-only", "--overwrite"]) == 2
    assert "--success-only needs a task with a success test" in capsys.readouterr().err
    out = tmp_path / "irl"
    args = ["irl", "--dataset", str(path), "--out", str(out), "--no-progress"]
    args += ["--tabular.tolerance", "0.05"]
    assert cli_main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "iltk/ObjectWorld-v0" and res["demos"] == 200
    assert res["reward_correlation_with_true"] > 0.8, res
    assert (out / "plots" / "reward_heatmap.png").exists()
    with np.load(out / "reward.npz") as z:
        assert z["reward"].shape == (z["expert_visitation"].shape[0],)
    assert "correlation with the true reward" in capsys.readouterr().out
    assert cli_main(args + ["--resume"]) == 2
    assert "tabular IRL (iltk/ObjectWorld-v0) keeps no checkpoint" in capsys.readouterr().err


def test_the_policys_episodes_start_where_the_demonstrations_did():
    seeds = [4, 9, 2]
    demos = Demonstrations(
        np.zeros((3, 2), np.float32), np.zeros((3, 1), np.float32), [], seeds, 0, {}
    )
    only = RewardPlayer(IRLConfig(task="iltk/Reach-v0"), demos, "cpu")
    assert only.episode_seeds == seeds
    fresh = RewardPlayer(
        IRLConfig(task="iltk/Reach-v0", reward=RewardPlayerSettings(starts="fresh")), demos, "cpu"
    )
    assert fresh.episode_seeds is None
    unknown = dataclasses.replace(demos, seeds=[4, None, 2])  # a file without reset seeds
    assert RewardPlayer(IRLConfig(task="iltk/Reach-v0"), unknown, "cpu").episode_seeds is None


def test_the_reward_player_checks_the_tasks_sizes():
    demos = Demonstrations(
        np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32), [], [], 0, {}
    )
    with pytest.raises(ValueError, match="observations have 2 values, the task's 9"):
        RewardPlayer(IRLConfig(task="iltk/Reach-v0"), demos, "cpu").prepare(9, 1)


def test_bad_irl_settings_are_refused(reach_demos, tmp_path, capsys):
    for args, words in [
        (["--demos", "-1"], "demos must be >= 0"),
        (["--reward.l2", "nan"], "l2 must be"),
        (["--task", "iltk/Push-v0"], "not iltk/Push-v0"),
    ]:
        argv = ["irl", "--dataset", str(reach_demos), "--out", str(tmp_path / "o")] + args
        try:
            code = cli_main(argv)
        except SystemExit as exit:  # tyro: a flag it cannot parse
            code = exit.code
        assert code != 0
        assert words in capsys.readouterr().err, words
    assert not (tmp_path / "o").exists()
    torch.set_num_threads(1)


def test_the_policy_player_can_start_from_a_bc_checkpoint_and_keep_a_bc_term(
    reach_demos, reach_bc, tmp_path
):
    from iltk.algos.irl.deep import start_policy, train_deep_irl
    from iltk.policies import load_policy

    out = tmp_path / "irl"
    cfg = IRLConfig(
        dataset=reach_demos,
        task="iltk/Reach-v0",
        out=out,
        init_policy=reach_bc,
        total_timesteps=768,
        critic_warmup=3,  # every rollout: the actor stays the BC policy
        bc_weight=0.5,
        eval_every=0,
        eval_episodes=0,
        progress=False,
        reward=RewardPlayerSettings(updates=2),
        ppo=dataclasses.replace(IRLConfig().ppo, n_steps=256),
    )
    assert cfg.ppo_config("iltk/Reach-v0").ppo.lr == 3e-5  # fine-tuning's step
    assert cfg.ppo_config("iltk/Reach-v0").ppo.normalize_obs is False
    train_deep_irl(cfg)
    bc, tuned = load_policy(reach_bc), load_policy(out / "policy")
    states = np.random.default_rng(0).normal(size=(16, 9)).astype(np.float32) * 0.2
    with torch.no_grad():
        a = bc.predict({"state": torch.as_tensor(states)})
        b = tuned.predict({"state": torch.as_tensor(states)})
    torch.testing.assert_close(a, b)
    rows = (out / "metrics.csv").read_text().splitlines()
    assert "bc_reg_weight" in rows[0]
    # the fine-tuned result is no BC checkpoint to start from
    with pytest.raises(ValueError, match="starts from an MLP BC checkpoint"):
        start_policy(dataclasses.replace(cfg, init_policy=out / "policy"))


def test_the_reward_player_goes_on_from_another_runs_state(reach_demos, reach_bc, tmp_path):
    """--init-reward: a second game (here against a BC-started policy player) continues
    the first one's reward player, its moves and replay included; a reward player of
    another shape, a folder without one and a tabular task are refused in one line."""
    from iltk.algos.irl.deep import start_reward, train_deep_irl
    from iltk.algos.irl.run import train_irl
    from iltk.rewards import load_reward

    base = IRLConfig(
        dataset=reach_demos,
        task="iltk/Reach-v0",
        out=tmp_path / "scratch",
        total_timesteps=512,
        warm_start="none",
        critic_warmup=0,
        eval_every=0,
        eval_episodes=0,
        progress=False,
        reward=RewardPlayerSettings(updates=2, replay=10),
        ppo=dataclasses.replace(IRLConfig().ppo, n_steps=256),
    )
    train_deep_irl(base)
    first = start_reward(dataclasses.replace(base, init_reward=base.out))
    assert first["updates"] == 2 and len(first["replay"]) == 2
    then = dataclasses.replace(
        base,
        out=tmp_path / "then",
        init_reward=base.out,
        init_policy=reach_bc,
        total_timesteps=256,
    )
    train_deep_irl(then)
    assert json.loads((then.out / "reward" / "config.json").read_text())["extra"]["updates"] == 3
    went_on = start_reward(dataclasses.replace(base, init_reward=then.out))
    assert len(went_on["replay"]) == 3
    for old, kept in zip(first["replay"], went_on["replay"][:2]):
        assert all(np.array_equal(a, b) for a, b in zip(old, kept))
    # one normalization for the whole game: the first run's, not refitted on BC's rollouts
    a, b = load_reward(base.out / "reward"), load_reward(then.out / "reward")
    assert torch.equal(a.obs_mean, b.obs_mean) and torch.equal(a.obs_std, b.obs_std)
    import shutil

    shutil.copytree(base.out, tmp_path / "damaged")
    state = tmp_path / "damaged" / "last" / "train_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # a copy cut short
    refusals = [
        (dict(init_reward=tmp_path / "damaged"), "train_state.pt is damaged"),
        (dict(reward=RewardPlayerSettings(updates=2, kind="sa")), "--reward.kind s there, sa here"),
        (dict(reward=RewardPlayerSettings(updates=2, replay=10, hidden=[8])), "hidden"),
        (dict(init_reward=tmp_path / "nothing"), "that has saved a checkpoint"),
        (dict(init_reward=reach_bc.parent), "holds no reward player"),
    ]
    for change, words in refusals:
        cfg = dataclasses.replace(then, out=tmp_path / "refused", **change)
        with pytest.raises(ValueError, match=words):
            train_deep_irl(cfg)
        assert not (tmp_path / "refused").exists()
    with pytest.raises(ValueError, match="tabular IRL"):
        train_irl(dataclasses.replace(then, task="iltk/ObjectWorld-v0"))
    torch.set_num_threads(1)


def test_irl_learns_from_a_dict_of_observations(tmp_path):
    """A Panda task observes a dict of arrays: the demonstrations' steps are those values
    side by side in PPO's order, so the reward player, PPO and `iltk ppo --reward` all see
    the same 19 numbers."""
    from iltk.algos.ppo import state_keys
    from iltk.collect import collect_demos
    from iltk.data import DemoFile
    from iltk.policies import load_policy
    from iltk.rewards import load_reward

    task, path = "iltk/PandaLift-v0", tmp_path / "lift.hdf5"
    collect_demos(task, path, 2, progress=False)
    env = make_env(task)
    keys = state_keys(env.observation_space)
    env.close()
    assert keys == ["object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"]
    demos = load_demonstrations(path, task, keys=keys)
    with DemoFile(path) as f:
        first = f.demos[0]
        want = np.concatenate([f.read(first, f"obs/{k}") for k in keys], axis=1)
        nxt = np.concatenate([f.read(first, f"next_obs/{k}") for k in keys], axis=1)
    assert demos.states.shape[1] == 19
    np.testing.assert_array_equal(demos.episodes[0], want)
    np.testing.assert_array_equal(demos.next_states[: len(want)], nxt)
    with pytest.raises(DatasetError, match="has no obs/state"):
        load_demonstrations(path, task)  # a flat-state task's key, named as missing
    out = tmp_path / "irl"
    args = ["irl", "--dataset", str(path), "--out", str(out), "--no-progress"]
    args += ["--total-timesteps", "512", "--ppo.n-steps", "256", "--eval-episodes", "1"]
    args += ["--reward.updates", "2", "--bc-steps", "20", "--reward.kind", "sa"]
    assert cli_main(args) == 0
    assert load_reward(out / "reward").config.obs_dim == 19
    assert load_policy(out / "policy").config.state_dim == 19
