"""The real windowed commands on a real X server (Xvfb) with MUJOCO_GL=egl, driven by real
key events: what a person at a desk sees and records (issue 15: the window used to die
with EGL_BAD_ACCESS, or stay black)."""

import subprocess
import sys
import time

import numpy as np
import pytest

from iltk.data import DemoFile

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from xdisplay import XvfbDisplay  # noqa: E402

pytestmark = pytest.mark.xserver

ILTK = [sys.executable, "-m", "iltk.cli"]


@pytest.fixture(scope="module")
def x():
    display = XvfbDisplay()
    yield display
    display.close()


def _start(x, argv, tmp_path, name, mujoco_gl="egl"):
    log = open(tmp_path / f"{name}.log", "w")
    proc = subprocess.Popen(
        [*ILTK, *argv], env=x.env(mujoco_gl), stdout=log, stderr=subprocess.STDOUT
    )
    return proc, log


def _finish(proc, log, timeout=60) -> str:
    rc = proc.wait(timeout=timeout)
    log.close()
    text = open(log.name).read()
    assert rc == 0, text
    assert "Traceback" not in text and "EGLError" not in text, text
    return text


def _scene_problem(img: np.ndarray) -> str | None:
    lit = img.sum(2) > 90
    if lit.mean() < 0.15:
        return f"the screen is mostly black ({lit.mean():.1%} lit)"
    # the checkered floor: many blue-grey pixels
    grey = (np.ptp(img.astype(int), axis=2) < 40) & (img[..., 2] > 90) & (img[..., 2] < 220)
    if grey.mean() < 0.05:
        return "no floor visible: the camera image is not drawn"
    return None


def _shows_scene(x, path, timeout: float = 60.0) -> np.ndarray:
    """A screenshot once the scene is drawn; fails when it is not within ``timeout``
    (the window maps a moment before its first frame is flipped)."""
    deadline = time.monotonic() + timeout
    while True:
        img = x.screenshot(path)
        problem = _scene_problem(img)
        if problem is None:
            return img
        assert time.monotonic() < deadline, problem
        time.sleep(0.1)


def test_record_in_a_real_window(x, tmp_path):
    out = tmp_path / "human.hdf5"
    proc, log = _start(
        x, ["record", "--task", "iltk/Reach-v0", "--out", str(out), "--input", "keyboard",
            "--operator", "tester"], tmp_path, "record")  # fmt: skip
    x.window_of(proc, log=log)
    _shows_scene(x, tmp_path / "ready.png")  # the session polls its window: keys now count
    x.hold("Up", 1.0)
    _shows_scene(x, tmp_path / "record.png")
    x.key("Return")  # save
    x.key("Escape")
    text = _finish(proc, log)
    assert "saved 1 episode to" in text
    with DemoFile(out) as f:
        assert len(f.demos) == 1
        attrs = f.demo_attrs("demo_0")
        assert attrs["source"] == "human" and attrs["operator"] == "tester"
        actions = f.read("demo_0", "actions")
    assert (actions[:, 1] > 0.5).sum() >= 5, "holding Up did not move the agent in +y"


@pytest.mark.parametrize("mujoco_gl", ["egl", "glfw", None])
def test_replay_window_shows_the_recording(x, tmp_path, mujoco_gl):
    """Whatever MUJOCO_GL says (None: unset), the window shows the scene."""
    from iltk.collect import collect_demos

    data = tmp_path / "push.hdf5"
    collect_demos("iltk/Push-v0", data, 2, progress=False)
    proc, log = _start(x, ["replay", str(data)], tmp_path, "replay", mujoco_gl)
    x.window_of(proc, log=log)
    _shows_scene(x, tmp_path / "replay.png")
    x.key("space")  # pause
    x.key("Escape")
    _finish(proc, log)


def test_correct_takeover_in_a_real_window(x, tmp_path):
    from iltk.algos.supervised import TrainConfig, train
    from iltk.collect import collect_demos

    data = tmp_path / "reach.hdf5"
    collect_demos("iltk/Reach-v0", data, 3, progress=False)
    run = tmp_path / "run"
    train(TrainConfig(dataset=data, out=run, steps=20, eval_episodes=0, progress=False))
    out = tmp_path / "corrections.hdf5"
    proc, log = _start(
        x, ["correct", "--policy", str(run / "last"), "--out", str(out), "--mode", "hg-dagger",
            "--input", "keyboard"], tmp_path, "correct")  # fmt: skip
    x.window_of(proc, log=log)
    _shows_scene(x, tmp_path / "ready.png")
    x.xdotool("keydown", "t")
    x.hold("Left", 1.0)
    x.xdotool("keyup", "t")
    _shows_scene(x, tmp_path / "correct.png")
    x.key("Return")
    x.key("Escape")
    _finish(proc, log)
    with DemoFile(out) as f:
        assert len(f.demos) == 1
        inter = f.read("demo_0", "intervention")
        actions = f.read("demo_0", "actions")
    assert inter.sum() >= 5, "holding T did not hand control to the person"
    assert (actions[inter][:, 0] < -0.5).mean() > 0.5, "the person's Left was not recorded"


def test_watch_a_policy_in_a_real_window(x, tmp_path):
    from iltk.algos.supervised import TrainConfig, train
    from iltk.collect import collect_demos

    data = tmp_path / "reach.hdf5"
    collect_demos("iltk/Reach-v0", data, 3, progress=False)
    run = tmp_path / "run"
    train(TrainConfig(dataset=data, out=run, steps=20, eval_episodes=0, progress=False))
    proc, log = _start(x, ["replay", "--policy", str(run / "last")], tmp_path, "watch")
    x.window_of(proc, log=log)
    _shows_scene(x, tmp_path / "watch.png")
    x.key("Escape")
    _finish(proc, log)


def test_no_display_is_said_at_once(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "SDL_VIDEODRIVER")}
    out = tmp_path / "r.hdf5"
    res = subprocess.run(
        [*ILTK, "record", "--task", "iltk/Reach-v0", "--out", str(out), "--input", "keyboard"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "no display to open a window on" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()


def test_record_the_arm_in_a_real_window(x, tmp_path):
    """The arm in a real window, steered by real key events in 6-DoF: the white arm is on
    screen, and the held yaw and lift keys are what was recorded."""
    out = tmp_path / "arm.hdf5"
    proc, log = _start(
        x, ["record", "--task", "iltk/PandaLift-v0", "--out", str(out), "--input", "keyboard"],
        tmp_path, "arm")  # fmt: skip
    x.window_of(proc, log=log)
    deadline = time.monotonic() + 60
    while True:  # the window's first frame: the table (tan) and the arm (white) drawn
        img = x.screenshot(tmp_path / "arm_ready.png").astype(int)
        white = (img.min(axis=2) > 200).mean()
        tan = ((img[..., 0] - img[..., 2]) > 25).mean()
        if white > 0.01 and tan > 0.05:
            break
        assert time.monotonic() < deadline, f"no arm on screen (white {white:.1%}, table {tan:.1%})"
        time.sleep(0.1)
    x.hold("u", 1.0)  # yaw
    x.hold("w", 0.6)  # up
    x.screenshot(tmp_path / "arm_moved.png")
    x.key("Return")
    x.key("Escape")
    text = _finish(proc, log)
    assert "saved 1 episode to" in text
    with DemoFile(out) as f:
        actions = f.read("demo_0", "actions")
    assert actions.shape[1] == 7
    assert (actions[:, 5] > 0.5).sum() >= 5, "holding U did not yaw the arm"
    assert (actions[:, 2] > 0.5).sum() >= 3, "holding W did not lift the arm"


def test_a_virtual_pad_steers_the_arm_in_a_real_window(x, tmp_path):
    """SDL's real joystick and controller code, a real X window: the pad's stick and yaw
    reach the recorded actions, and the window shows the arm."""
    import imageio.v2 as imageio

    out, shot = tmp_path / "pad.hdf5", tmp_path / "pad.png"
    child = __file__.rsplit("/", 1)[0] + "/pad_window_child.py"
    res = subprocess.run(
        [sys.executable, child, str(out), str(shot)],
        env=x.env("egl"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and "saved 1" in res.stdout, res.stdout + res.stderr
    with DemoFile(out) as f:
        a = f.read("demo_0", "actions")
    assert (a[:, 0] == 1.0).sum() >= 10 and (a[:, 5] == 1.0).sum() >= 10
    img = imageio.imread(shot).astype(int)
    assert (img.min(axis=2) > 200).mean() > 0.01, "no white arm in the window"
