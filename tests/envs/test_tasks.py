"""Contract tests swept over every registered iltk task."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import iltk
from iltk.envs import (
    PANDA_TASK_IDS,
    TASK_IDS,
    UnknownTaskError,
    make_env,
    make_expert,
    require_iltk_task,
)


def flat(obs):
    """A state observation as one vector (the Panda tasks' dict of robomimic keys concatenated)."""
    if isinstance(obs, dict):
        return np.concatenate([np.asarray(v).ravel() for v in obs.values()])
    return obs


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_check_env(task_id):
    env = make_env(task_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_registered_on_import(task_id):
    assert task_id in gym.registry
    assert iltk.__version__


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_same_seed_same_trajectory(task_id):
    def run(seed):
        env = make_env(task_id)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        traj = [flat(obs)]
        for _ in range(30):
            obs, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape))
            traj.append(flat(obs))
        return np.stack(traj)

    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_set_state_reproduces_exactly(task_id):
    env = make_env(task_id)
    expert = make_expert(env)
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(15):
        env.step(np.clip(expert() + rng.normal(0, 0.3, env.action_space.shape), -1, 1))
    state = env.unwrapped.get_state()
    actions = rng.uniform(-1, 1, (25,) + env.action_space.shape)
    first = [env.step(a)[:2] for a in actions]
    env.unwrapped.set_state(state)
    second = [env.step(a)[:2] for a in actions]
    for (o1, r1), (o2, r2) in zip(first, second):
        np.testing.assert_array_equal(flat(o1), flat(o2))
        assert r1 == r2
    with pytest.raises(ValueError, match="state of shape"):
        env.unwrapped.set_state(state[:-1])


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_reward_is_sum_of_info_terms(task_id):
    env = make_env(task_id)
    expert = make_expert(env)
    env.reset(seed=0)
    for _ in range(40):
        obs, reward, terminated, truncated, info = env.step(expert())
        terms = {k: v for k, v in info.items() if k.startswith("reward_")}
        assert len(terms) >= 2
        assert reward == pytest.approx(sum(terms.values()), abs=1e-9)
        assert isinstance(info["success"], bool)
        if terminated or truncated:
            break


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_dense_reward_never_pays_for_lingering(task_id):
    """Episodes end on success, so a step short of it must not pay: else PPO learns to hold
    the task just short of success (Lift's positive lift term did: 97% -> 15% success while
    the return rose, benchmarks/RESULTS.md). Along the expert's episodes, which pass right
    by success, every step before it has a reward <= 0."""
    env = make_env(task_id)
    expert = make_expert(env)
    for seed in range(3):
        env.reset(seed=seed)
        rewards, done = [], False
        while not done:
            _, reward, terminated, truncated, info = env.step(expert())
            done = terminated or truncated
            if not info["success"]:
                rewards.append(reward)
        assert info["success"] and max(rewards) <= 0.0, (task_id, max(rewards))


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_expert_success_rate(task_id):
    env = make_env(task_id)
    expert = make_expert(env)
    successes = 0
    for seed in range(20):
        env.reset(seed=10_000 + seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(expert())
            done = terminated or truncated
        successes += info["success"]
    assert successes >= 18, f"{task_id}: expert succeeded {successes}/20"


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_expert_labels_off_path_states(task_id):
    """The expert is a function of the state: same state, same action, wherever it came from."""
    env = make_env(task_id)
    expert = make_expert(env)
    env.reset(seed=5)
    rng = np.random.default_rng(2)
    for _ in range(10):
        env.step(rng.uniform(-1, 1, env.action_space.shape))  # off the expert's path
    state, label = env.unwrapped.get_state(), expert()
    assert label.shape == env.action_space.shape and np.all(np.abs(label) <= 1)
    env.reset(seed=99)
    env.unwrapped.set_state(state)
    np.testing.assert_array_equal(expert(), label)


@pytest.mark.parametrize("task_id", [t for t in TASK_IDS if t not in PANDA_TASK_IDS])
def test_pixel_observations(task_id):
    env = make_env(task_id, obs_mode="pixels", image_size=64)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    expert = make_expert(env)
    for _ in range(10):
        later, *_ = env.step(expert())
    assert not np.array_equal(obs, later), "image did not change when the scene moved"
    env.close()

    env = make_env(task_id, obs_mode="state+pixels")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state", "pixels"}
    assert obs["pixels"].shape == (84, 84, 3)
    assert obs["state"].shape == env.observation_space["state"].shape
    env.close()


def test_render_rgb_array():
    env = make_env("iltk/Lift-v0", render_mode="rgb_array", render_width=160, render_height=120)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8 and frame.std() > 5
    env.close()


def test_control_rate_sets_substeps():
    env = make_env("iltk/Reach-v0", control_freq=10)
    assert env.unwrapped.n_substeps == 50
    assert env.unwrapped.metadata["render_fps"] == 10


def test_unknown_task_lists_valid_ids():
    with pytest.raises(UnknownTaskError) as err:
        make_env("iltk/Pussh-v0")
    for task_id in TASK_IDS:
        assert task_id in str(err.value)


def test_bad_kwargs_are_explained():
    with pytest.raises(ValueError, match="obs_mode"):
        make_env("iltk/Reach-v0", obs_mode="depth")
    with pytest.raises(ValueError, match="bad keyword arguments"):
        make_env("iltk/Reach-v0", no_such_option=1)


def test_other_gymnasium_ids_work():
    env = make_env("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3,)
    with pytest.raises(ValueError, match="no scripted expert"):
        make_expert(env)
    with pytest.raises(ValueError, match="Pendulum-v1: not an iltk task; demos need one"):
        require_iltk_task("Pendulum-v1", "demos need one")
    with pytest.raises(UnknownTaskError):
        require_iltk_task("iltk/NoSuchTask-v0", "demos need one")
    require_iltk_task("iltk/Reach-v0", "demos need one")  # an iltk task passes


def test_point_maze_demos_are_bimodal():
    """From one start state the expert goes above the wall in some episodes and below it in
    others; the side drawn at reset lives in the sim state, so set_state carries it."""
    env = make_env("iltk/PointMaze-v0")
    u, expert = env.unwrapped, make_expert(env)
    env.reset(seed=0)
    qpos0, mocap0 = u.data.qpos.copy(), u.data.mocap_pos.copy()
    sides = set()
    for seed in range(12):
        env.reset(seed=seed)
        u.data.qpos[:], u.data.qvel[:], u.data.mocap_pos[:] = qpos0, 0.0, mocap0
        u.data.userdata[1] = qpos0[1]  # the start's y: this is the episode's start
        mujoco.mj_forward(u.model, u.data)
        label = expert()
        side = float(np.sign(label[1]))
        sides.add(side)
        state = u.get_state()
        env.reset(seed=seed + 100)
        u.set_state(state)
        np.testing.assert_array_equal(expert(), label)
    assert sides == {-1.0, 1.0}


def test_point_maze_expert_follows_where_it_was_taken():
    """Queried where a learner has taken the agent towards the other side of the wall, the
    expert goes on that way instead of labelling a U-turn; its own episodes keep the drawn
    side (so demonstrations stay bimodal)."""
    env = make_env("iltk/PointMaze-v0")
    u, expert = env.unwrapped, make_expert(env)
    for seed in range(6):
        env.reset(seed=seed)
        side = 1.0 if u.data.userdata[0] >= 0 else -1.0
        start = u.data.qpos[:2].copy()
        assert np.sign(expert()[1]) == side
        u.data.qpos[1] = start[1] - side * 0.03  # a little the other way: still the drawn side
        mujoco.mj_forward(u.model, u.data)
        assert np.sign(expert()[1]) == side
        u.data.qpos[:2] = [-0.2, start[1] - side * 0.1]  # taken well the other way, at the wall
        mujoco.mj_forward(u.model, u.data)
        assert np.sign(expert()[1]) == -side
        # the expert's own episode passes the wall on the drawn side
        env.reset(seed=seed)
        ys = []
        for _ in range(150):
            _, _, terminated, truncated, _ = env.step(expert())
            ys.append(u.data.qpos[1] if abs(u.data.qpos[0]) < 0.1 else np.nan)
            if terminated or truncated:
                break
        assert terminated
        assert np.all(np.sign(np.array(ys)[~np.isnan(ys)]) == side)


def test_point_maze_deterministic_expert_takes_the_start_side(tmp_path):
    """expert_side="start": the side is the start's (one mode per state), the layouts are the
    seed's as with the drawn side, and whole episodes pass the wall on that side; collect
    records the keyword, so evaluation makes the same env."""
    drawn, start = make_env("iltk/PointMaze-v0"), make_env("iltk/PointMaze-v0", expert_side="start")
    expert, sides_drawn, sides_start = make_expert(start), set(), set()
    for seed in range(12):
        drawn.reset(seed=seed)
        start.reset(seed=seed)
        np.testing.assert_array_equal(drawn.unwrapped.data.qpos, start.unwrapped.data.qpos)
        y0 = start.unwrapped.data.qpos[1]
        side = 1.0 if y0 >= 0 else -1.0
        assert np.sign(expert()[1]) == side
        sides_drawn.add((side, float(np.sign(drawn.unwrapped.data.userdata[0]))))
        sides_start.add(side)
    assert sides_start == {-1.0, 1.0}  # both sides occur, each tied to its starts
    assert len(sides_drawn) > 2  # the drawn side is not the start's
    with pytest.raises(ValueError, match="expert_side must be one of random, start"):
        make_env("iltk/PointMaze-v0", expert_side="left")
    from iltk.algos.settings import CollectConfig
    from iltk.collect import collect
    from iltk.data import DemoFile

    out = tmp_path / "one_side.hdf5"
    collect(
        CollectConfig(task="iltk/PointMaze-v0", episodes=2, out=out, expert_side="start"),
        progress=False,
    )
    with DemoFile(out) as f:
        assert f.env_args["env_kwargs"]["expert_side"] == "start"
    with pytest.raises(ValueError, match="--expert-side applies to iltk/PointMaze-v0 only"):
        collect(
            CollectConfig(
                task="iltk/Reach-v0", episodes=1, out=tmp_path / "r.hdf5", expert_side="start"
            )
        )


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_init_spread_pulls_starts_towards_one_layout(task_id):
    def starts(spread):
        env = make_env(task_id, init_spread=spread)
        out = []
        for seed in range(12):
            env.reset(seed=seed)
            out.append(env.unwrapped.get_state().copy())
        return np.stack(out)

    full, narrow, fixed = starts(1.0), starts(0.1), starts(0.0)
    # the PointMaze expert's side is a coin, not part of the layout (userdata: last values)
    n = -2 if task_id == "iltk/PointMaze-v0" else None
    full, narrow, fixed = full[:, :n], narrow[:, :n], fixed[:, :n]
    assert np.ptp(full, axis=0).max() > 0.1  # the full ranges differ from episode to episode
    np.testing.assert_array_equal(fixed, np.broadcast_to(fixed[0], fixed.shape))
    # a tenth of the spread: about a tenth of the variation, around the nominal layout
    assert 0 < np.ptp(narrow, axis=0).max() <= 0.1 * np.ptp(full, axis=0).max() * 1.5
    assert np.abs(narrow - fixed[0]).max() <= 0.2 * np.ptp(full, axis=0).max()
    with pytest.raises(ValueError, match="init_spread"):
        make_env(task_id, init_spread=1.5)


def test_reach_v1_observes_v0s_values_and_the_target_relative_to_the_end_effector():
    import warnings

    old, new = make_env("iltk/Reach-v0"), make_env("iltk/Reach-v1")
    o0, _ = old.reset(seed=7)
    o1, _ = new.reset(seed=7)
    action = np.array([0.5, -0.3, 0.2], np.float32)
    for _ in range(5):
        o0, *_ = old.step(action)
        o1, *_ = new.step(action)
    assert o0.shape == (9,) and o1.shape == (12,)
    np.testing.assert_array_equal(o1[:9], o0)
    np.testing.assert_allclose(o1[9:], o1[6:9] - o1[:3], atol=1e-6)
    old.close()
    new.close()
    with warnings.catch_warnings():  # v0 stays a first-class task: no "out of date"
        warnings.simplefilter("error")
        make_env("iltk/Reach-v0").close()
