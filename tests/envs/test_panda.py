"""The Panda tasks: robomimic's observation keys, Cartesian and joint control through the IK,
limits that hold whatever the action, experts that recover, and clear errors."""

import numpy as np
import pytest

from iltk.controllers import ControlOutput, ExpertController
from iltk.envs import PANDA_TASK_IDS, make_env, make_expert, make_vector_env
from iltk.envs.panda import MAX_TILT, WORKSPACE_HIGH, WORKSPACE_LOW
from iltk.rollout import run_episodes

LOWDIM = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object")
CAMERAS = ("agentview", "robot0_eye_in_hand")


def test_four_arm_tasks_are_registered():
    assert set(PANDA_TASK_IDS) == {
        "iltk/PandaLift-v0",
        "iltk/PandaStack-v0",
        "iltk/PandaPickPlace-v0",
        "iltk/PandaNutAssembly-v0",
    }


@pytest.mark.parametrize("task_id", PANDA_TASK_IDS)
def test_observations_use_robomimics_keys(task_id):
    env = make_env(task_id)
    obs, _ = env.reset(seed=0)
    assert tuple(obs) == LOWDIM
    assert obs["robot0_eef_pos"].shape == (3,) and obs["robot0_gripper_qpos"].shape == (2,)
    quat = obs["robot0_eef_quat"]  # x y z w, pointing down at the start: about (1, 0, 0, 0)
    assert quat.shape == (4,) and abs(np.linalg.norm(quat) - 1) < 1e-5 and abs(quat[0]) > 0.99
    assert env.observation_space.contains(obs)
    # the start pose: the gripper at (0, 0, 0.2), open
    np.testing.assert_allclose(obs["robot0_eef_pos"], [0, 0, 0.2], atol=2e-3)
    np.testing.assert_allclose(obs["robot0_gripper_qpos"], [0.04, 0.04], atol=1e-6)
    env.close()


@pytest.mark.parametrize("task_id", PANDA_TASK_IDS)
def test_both_cameras_see_the_scene_move(task_id):
    env = make_env(task_id, obs_mode="state+pixels", image_size=48)
    obs, _ = env.reset(seed=0)
    assert set(obs) == set(LOWDIM) | set(CAMERAS)
    assert env.observation_space.contains(obs)
    expert = make_expert(env)
    for _ in range(12):
        later, *_ = env.step(expert())
    for cam in CAMERAS:
        assert obs[cam].shape == (48, 48, 3) and obs[cam].dtype == np.uint8
        assert obs[cam].std() > 5, f"{cam} is blank"
        assert np.abs(obs[cam].astype(int) - later[cam]).mean() > 1, f"{cam} did not change"
    env.close()
    env = make_env(task_id, obs_mode="pixels", image_size=32)
    assert set(env.reset(seed=0)[0]) == set(CAMERAS)
    env.close()


@pytest.mark.parametrize("action_mode", ["cartesian", "joint"])
def test_limits_hold_whatever_the_action(action_mode):
    """Saturated random actions for 200 steps: the joints stay inside their ranges, the
    commanded grip inside the workspace box and the tilt limit, the arm near it, nothing
    blows up."""
    env = make_env("iltk/PandaLift-v0", action_mode=action_mode)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    low, high = u.model.jnt_range[:7].T
    m = u.model
    robot = {i for i in range(m.nbody) if m.body(i).name.startswith("panda0")}
    fingers = {m.body("panda0_leftfinger").id, m.body("panda0_rightfinger").id}
    table = m.geom("table").id
    for t in range(200):
        action = np.sign(rng.uniform(-1, 1, env.action_space.shape)) * (1 + 4 * (t % 2))
        env.step(action)  # actions beyond [-1, 1] are clipped
        q = u.data.qpos[:7]
        assert np.all(q >= low - 0.02) and np.all(q <= high + 0.02), (t, q)
        assert np.all(u.data.ctrl[:7] >= low - 1e-9) and np.all(u.data.ctrl[:7] <= high + 1e-9)
        pos, rot = u.ik.forward(u.data.ctrl[:7])
        assert np.all(pos >= WORKSPACE_LOW - 1e-3) and np.all(pos <= WORKSPACE_HIGH + 1e-3), pos
        assert np.arccos(np.clip(-rot[2, 2], -1, 1)) <= MAX_TILT + 0.05
        grip = u.eef_pos()
        assert np.all(grip >= WORKSPACE_LOW - 0.06) and np.all(grip <= WORKSPACE_HIGH + 0.06)
        assert np.all(np.isfinite(u.data.qvel)) and np.abs(u.data.qvel).max() < 50
        for c in u.data.contact[: u.data.ncon]:
            b1, b2 = m.geom_bodyid[c.geom1], m.geom_bodyid[c.geom2]
            assert not (b1 in robot and b2 in robot), "the arm collided with itself"
            if table in (c.geom1, c.geom2):  # only the fingertips ever touch the table
                assert {b1, b2} & robot <= fingers, "a link of the arm hit the table"
    env.close()


def test_cartesian_actions_move_the_gripper_as_commanded():
    env = make_env("iltk/PandaLift-v0")
    u = env.unwrapped
    for axis in range(3):
        env.reset(seed=0)
        start = u.eef_pos()
        action = np.zeros(7, np.float32)
        action[axis] = 1.0 if axis < 2 else -1.0
        for _ in range(8):
            env.step(action)
        moved = u.eef_pos() - start
        # 8 steps at 0.25 m/s: 0.1 m commanded; the servos lag a little
        assert 0.07 < abs(moved[axis]) < 0.105, (axis, moved)
        assert np.abs(np.delete(moved, axis)).max() < 0.01, (axis, moved)
    env.reset(seed=0)
    from iltk.envs.panda import yaw_of

    for _ in range(10):  # yaw at 1.5 rad/s for 0.5 s
        env.step(np.array([0, 0, 0, 0, 0, 1.0, -1], np.float32))
    assert 0.55 < yaw_of(u.eef_rot()) < 0.76
    env.close()


@pytest.mark.parametrize("task_id", PANDA_TASK_IDS)
def test_expert_recovers_from_noise(task_id):
    """Closed loop: with noise of std 0.3 on every executed action (DART's regime; 0.15 on
    the nut, whose peg leaves 4 mm a side) the expert still finishes the task."""
    std = 0.15 if task_id == "iltk/PandaNutAssembly-v0" else 0.3
    env = make_env(task_id)
    expert = make_expert(env)
    rng = np.random.default_rng(0)
    successes = 0
    for seed in range(5):
        env.reset(seed=500 + seed)
        done = False
        while not done:
            action = np.clip(expert() + rng.normal(0, std, env.action_space.shape), -1, 1)
            _, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        successes += info["success"]
    assert successes >= 4, f"{task_id}: {successes}/5 under noise"


def test_joint_mode_expert_succeeds():
    env = make_env("iltk/PandaLift-v0", action_mode="joint")
    assert env.action_space.shape == (8,)
    expert = make_expert(env)
    successes = 0
    for seed in range(5):
        env.reset(seed=seed)
        done = False
        while not done:
            label = expert()
            assert label.shape == (8,) and np.all(np.abs(label) <= 1)
            _, _, terminated, truncated, info = env.step(label)
            done = terminated or truncated
        successes += info["success"]
    assert successes >= 4


def test_bad_actions_and_modes_get_one_clear_error():
    with pytest.raises(ValueError, match="action_mode must be one of"):
        make_env("iltk/PandaLift-v0", action_mode="torque")
    env = make_env("iltk/PandaLift-v0")
    env.reset(seed=0)
    state = env.unwrapped.get_state()
    with pytest.raises(ValueError, match="not finite"):
        env.step(np.array([0, np.nan, 0, 0, 0, 0, 0], np.float32))
    with pytest.raises(ValueError, match="has 7 numbers"):
        env.step(np.zeros(4, np.float32))
    np.testing.assert_array_equal(env.unwrapped.get_state(), state)  # nothing was applied
    env.close()


def test_nothing_is_recorded_from_a_nan_action():
    class NanAtStep:
        def __init__(self, at):
            self.inner, self.at, self.t = ExpertController(), at, 0

        def reset(self, env_ids):
            pass

        def act(self, obs, info, envs):
            out = self.inner.act(obs, info, envs)
            self.t += 1
            if self.t == self.at:
                out = ControlOutput(executed=out.executed * np.nan, label=out.label)
            return out

    saved = []
    envs = make_vector_env("iltk/PandaLift-v0", 1)
    with pytest.raises(ValueError, match="not finite"):
        run_episodes(envs, NanAtStep(at=40), 3, seed=0, on_episode=saved.append)
    envs.close()
    # the first episode (about 26 steps) finished and was handed over; the broken one was not
    assert len(saved) == 1 and saved[0].success
