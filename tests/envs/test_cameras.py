"""The cameras a person watches show the whole workspace: every corner of the box the
controlled point can reach projects inside the frame (with a margin for the gripper)."""

import itertools

import mujoco
import numpy as np
import pytest

from iltk.envs import make_env

ASPECT = 320 / 240  # the window's and the videos' default render size


def corners(low, high):
    return [np.array(c) for c in itertools.product(*zip(low, high))]


def in_frame(model, data, camera, point, margin=0.03):
    cam = data.camera(camera)
    rel = cam.xmat.reshape(3, 3).T @ (point - cam.xpos)
    depth = -rel[2]
    if depth <= 0:
        return False
    half = np.tan(np.deg2rad(model.camera(camera).fovy[0]) / 2)
    x, y = rel[0] / (depth * half * ASPECT), rel[1] / (depth * half)
    reach = margin / (depth * half)  # the margin in normalized units at that depth
    return abs(x) + reach <= 1 and abs(y) + reach <= 1


def workspace(task):
    if task == "iltk/Reach-v0":
        from iltk.envs.reach import HIGH, LOW

        return LOW, HIGH
    from iltk.envs.panda import WORKSPACE_HIGH, WORKSPACE_LOW

    return WORKSPACE_LOW, WORKSPACE_HIGH


@pytest.mark.parametrize("task", ["iltk/Reach-v0", "iltk/PandaLift-v0", "iltk/PandaNutAssembly-v0"])
def test_the_window_views_show_the_whole_workspace(task):
    env = make_env(task)
    cameras = env.unwrapped.display_cameras
    assert len(cameras) == 2
    env.reset(seed=0)
    u = env.unwrapped
    mujoco.mj_forward(u.model, u.data)
    low, high = workspace(task)
    if task.startswith("iltk/Panda"):
        cameras = (*cameras, "agentview", "top")  # the observation and overhead views too
    for camera in cameras:
        outside = [c for c in corners(low, high) if not in_frame(u.model, u.data, camera, c)]
        assert not outside, f"{task}: camera {camera!r} misses workspace corners {outside}"
    env.close()
