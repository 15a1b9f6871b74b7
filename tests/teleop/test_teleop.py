"""Whole teleop sessions driven headless by posted pygame events."""

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pygame
import pytest

from iltk.data import DemoFile
from iltk.envs import make_env
from iltk.replay import EpisodePlayer, replay_video
from teleop.devices import GamepadDevice, KeyboardDevice, load_profile
from teleop.options import SessionOptions
from teleop.session import TeleopSession
from teleop.viewer import replay_window

sys.path.insert(0, str(Path(__file__).parent))
from timeline import Timeline, joy_axis, joy_button, key, tap  # noqa: E402


def run_session(tmp_path, device, schedule, task="iltk/Reach-v0", **kw):
    out = tmp_path / "rec.hdf5"
    timeline = Timeline(schedule)
    names = {f.name for f in dataclasses.fields(SessionOptions)}
    options = SessionOptions(control_freq=100, **{k: v for k, v in kw.items() if k in names})
    kw = {k: v for k, v in kw.items() if k not in names}
    session = TeleopSession(
        task, out, device, options, auto_save_after=0, event_hook=timeline, **kw
    )
    result = session.run()
    return out, result, timeline


def test_gamepad_session(tmp_path):
    xbox = load_profile(
        "xbox"
    )  # A=0 save, B=1 discard, Start=7 quit, left stick 0/1, right stick 4
    schedule = {
        0: [joy_axis(0, 1.0)],  # left stick right: +x
        10: [joy_axis(0, 0.0), joy_axis(1, -1.0)],  # left stick up (inverted axis): +y
        20: [joy_button(0), joy_button(0, False)],  # A: save
        21: [joy_axis(1, 0.0), joy_axis(4, -1.0)],  # right stick up: +z
        30: [joy_button(1)],  # B: discard
        32: [pygame.event.Event(pygame.JOYDEVICEREMOVED, instance_id=0)],
        40: [pygame.event.Event(pygame.JOYDEVICEADDED, device_index=0)],
        45: [joy_axis(0, -1.0)],  # -x
        50: [joy_button(0)],  # A: save
        55: [joy_button(7)],  # Start: quit
    }
    out, result, timeline = run_session(tmp_path, GamepadDevice(xbox, virtual=True), schedule)
    assert len(result.saved) == 2 and result.discarded == 1
    with DemoFile(out) as f:
        assert f.demos == ["demo_0", "demo_1"]
        first, second = f.episode("demo_0"), f.episode("demo_1")
        assert f.demo_attrs("demo_0")["source"] == "human"
    a = first["actions"]
    assert len(a) == 21
    np.testing.assert_array_equal(a[:10], np.tile([1, 0, 0], (10, 1)))
    np.testing.assert_array_equal(a[10:21], np.tile([0, 1, 0], (11, 1)))
    pos = first["obs"]["state"][:, :3]
    # at 100 Hz, 10 steps at full stick are 10 * 0.01 s * 0.5 m/s = 5 cm
    assert pos[10, 0] - pos[0, 0] > 0.035 and abs(pos[10, 1] - pos[0, 1]) < 0.005  # moved +x only
    assert pos[20, 1] - pos[10, 1] > 0.035 and abs(pos[20, 0] - pos[12, 0]) < 0.005  # then +y
    # the discarded episode's +z commands are nowhere but the step before the unplug
    b = second["actions"]
    assert (b[:, 2] > 0).sum() <= 1
    np.testing.assert_array_equal(b[-6:], np.tile([-1, 0, 0], (6, 1)))
    # the pause: polls went on while unplugged, but no steps were taken
    assert set(range(33, 41)) <= set(timeline.ticks_seen)
    assert len(b) == 1 + (50 - 40 + 1)


def test_keyboard_session_with_gripper(tmp_path):
    schedule = {
        0: [key(pygame.K_RIGHT)],
        6: [key(pygame.K_RIGHT, False), key(pygame.K_w)],
        9: tap(pygame.K_SPACE),  # close the gripper
        12: [key(pygame.K_w, False), *tap(pygame.K_RETURN)],  # save
        14: [key(pygame.K_LEFT)],
        18: tap(pygame.K_BACKSPACE),  # discard
        20: tap(pygame.K_r),  # reset without saving
        22: [key(pygame.K_LEFT, False), key(pygame.K_DOWN)],
        26: tap(pygame.K_RETURN),
        28: tap(pygame.K_ESCAPE),
    }
    out, result, _ = run_session(tmp_path, KeyboardDevice(), schedule, task="iltk/Lift-v0")
    assert len(result.saved) == 2 and result.discarded == 2
    with DemoFile(out) as f:
        a = f.read("demo_0", "actions")
        b = f.read("demo_1", "actions")
    np.testing.assert_array_equal(a[:6, :3], np.tile([1, 0, 0], (6, 1)))
    np.testing.assert_array_equal(a[6:12, :3], np.tile([0, 0, 1], (6, 1)))
    assert (a[:9, 3] == -1).all() and (a[9:, 3] == 1).all()  # Space closed the gripper at step 9
    assert len(b) == 26 - 21 + 1
    np.testing.assert_array_equal(b[1:, :2], np.tile([0, -1], (len(b) - 1, 1)))


def test_dart_noise_while_recording(tmp_path):
    schedule = {0: [key(pygame.K_RIGHT)], 15: tap(pygame.K_RETURN), 16: tap(pygame.K_ESCAPE)}
    out, result, _ = run_session(tmp_path, KeyboardDevice(), schedule, dart_noise=0.3, seed=3)
    with DemoFile(out) as f:
        ep = f.episode("demo_0")
        assert f.demo_attrs("demo_0")["dart_noise"] == 0.3
    np.testing.assert_array_equal(ep["actions"], np.tile([1, 0, 0], (16, 1)))  # clean label
    assert np.abs(ep["actions_executed"] - ep["actions"]).mean() > 0.05  # noisy execution
    assert "timestamps" in ep and "late" in ep


def test_auto_save_after_success(tmp_path):
    env = make_env("iltk/Reach-v0")
    env.reset(seed=0)
    target, eef = env.unwrapped._target(), env.unwrapped._eef()
    # drive straight at the target with the keyboard-equivalent pad axes, then hold still
    d = target - eef
    steps_x = int(abs(d[0]) / 0.5 / 0.01)
    out = tmp_path / "auto.hdf5"
    pad = GamepadDevice(load_profile("xbox"), virtual=True)
    schedule = {
        0: [joy_axis(0, float(np.sign(d[0])))],
        steps_x: [joy_axis(0, 0.0)],
        400: [joy_button(7)],
    }
    session = TeleopSession(
        "iltk/Reach-v0",
        out,
        pad,
        auto_save_after=3,
        event_hook=Timeline(schedule),
        options=SessionOptions(control_freq=100, episodes=1),
    )
    # make the target reachable by x motion alone
    session.env.unwrapped.data.mocap_pos[0] = [target[0], eef[1], eef[2]]
    session.envs.reset = _reset_keeping_target(
        session.envs.reset, session.env, [target[0], eef[1], eef[2]]
    )
    result = session.run()
    assert len(result.saved) == 1
    with DemoFile(out) as f:
        assert f.demo_attrs("demo_0")["success"]


def _reset_keeping_target(reset, env, target):
    def wrapped(*args, **kwargs):
        out = reset(*args, **kwargs)
        env.unwrapped.data.mocap_pos[0] = target
        import mujoco

        mujoco.mj_forward(env.unwrapped.model, env.unwrapped.data)
        return out

    return wrapped


def test_sigint_keeps_saved_episodes(tmp_path):
    out = tmp_path / "sig.hdf5"
    child = Path(__file__).parent / "session_child.py"
    proc = subprocess.Popen(
        [sys.executable, str(child), str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "SDL_VIDEODRIVER": "dummy"},
    )
    lines = []
    while len([line for line in lines if line.startswith("SAVED")]) < 3:
        line = proc.stdout.readline()
        assert line, "child exited early"
        lines.append(line.strip())
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    lines += rest.splitlines()
    saved = [line.split()[1] for line in lines if line.startswith("SAVED")]
    assert "EXITED" in lines
    with DemoFile(out) as f:
        assert set(saved) <= set(f.demos) and len(f.demos) == len(saved)
    assert not Path(str(out) + ".episodes").exists()  # consolidated on the way out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from iltk.collect import collect_demos

    path = tmp_path_factory.mktemp("rep") / "lift.hdf5"
    collect_demos("iltk/Lift-v0", path, 2, progress=False)
    return path


def test_replay_matches_direct_rendering(recorded):
    player = EpisodePlayer(recorded, (160, 120))
    env = make_env("iltk/Lift-v0", render_mode="rgb_array", render_width=160, render_height=120)
    env.reset(seed=123)
    with DemoFile(recorded) as f:
        states = f.read("demo_1", "states")
    player.load(1)
    for t in (0, len(states) // 2, len(states) - 1):
        env.unwrapped.set_state(states[t])
        np.testing.assert_array_equal(player.frame(t), env.render())
    assert not np.array_equal(player.frame(0), player.frame(len(states) - 1))
    player.close()


def test_replay_window_and_video(recorded, tmp_path):
    schedule = {
        2: tap(pygame.K_SPACE),
        3: tap(pygame.K_RIGHT),
        4: tap(pygame.K_n),
        6: tap(pygame.K_ESCAPE),
    }
    replay_window(recorded, 0, max_ticks=50, event_hook=Timeline(schedule))
    # --episode 0: plays to that episode's end and stays there (4x speed to be quick)
    with DemoFile(recorded) as f:
        length = f.num_samples("demo_0")
    fast = Timeline({0: tap(pygame.K_PLUS) + tap(pygame.K_PLUS)})
    assert replay_window(recorded, 0, max_ticks=length + 15, event_hook=fast) == 0
    assert replay_window(recorded, None, max_ticks=length + 15, event_hook=fast) == 1
    video = replay_video(recorded, tmp_path / "r.mp4", [0])
    import imageio.v2 as imageio

    frames = imageio.mimread(video)
    with DemoFile(recorded) as f:
        assert len(frames) == f.num_samples("demo_0")


@pytest.mark.parametrize("size", [(640, 480), (480, 480), (1000, 700), (640, 640)])
def test_hud_never_covers_the_scene(size):
    from teleop.window import TeleopWindow

    w = TeleopWindow(size)
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[...] = (200, 0, 200)  # a scene of one colour: any text over it would show
    keys = [f"key {i}: does thing number {i}" for i in range(9)]
    w.show(
        frame,
        ["iltk/Reach-v0   record", "episode 3   step 7   4.4 s left", "success no   speed 100%"],
        footer=keys,
        badge=("HUMAN", (90, 210, 120)),
        inset=np.full((168, 224, 3), 60, np.uint8),
        inset_label="top view",
    )
    snap = w.snapshot()
    scene, panel = w.layout(frame.shape[:2])
    assert not scene.colliderect(panel)
    inner = snap[scene.y : scene.bottom, scene.x : scene.right]
    magenta = np.all(inner == (200, 0, 200), axis=2)
    # the scene, scaled to fit, is all magenta: no pixel of text over it
    rows, cols = np.nonzero(magenta)
    block = magenta[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert block.all(), "text drawn over the scene"
    assert block.size > 0.5 * scene.w * scene.h * min(1, 320 / 240 * scene.h / scene.w)
    # the frame in the badge's colour around it, and text in the panel
    assert np.all(snap[scene.y + rows.min() - 2, scene.x + cols.min() + 5] == (90, 210, 120))
    panel_px = snap[panel.y : panel.bottom, panel.x : panel.right].reshape(-1, 3)
    assert (panel_px.sum(1) > 500).mean() > 0.01  # bright text pixels
    w.close()


def test_calibrate_shows_live_values():
    from teleop.calibrate import calibrate

    schedule = {
        1: [joy_axis(0, 0.5), joy_axis(4, -1.0)],
        2: [joy_button(3)],
        4: tap(pygame.K_ESCAPE),
    }
    values = calibrate(virtual=True, max_ticks=20, event_hook=Timeline(schedule))
    assert values["axes"] == {0: 0.5, 4: -1.0} and values["buttons"] == {3: True}


def test_profiles_and_deadzone():
    from teleop.devices import apply_deadzone, list_profiles, profile_for

    assert {"xbox", "playstation", "generic"} <= set(list_profiles())
    assert profile_for("Xbox 360 Controller") == "xbox"
    assert profile_for("Sony Interactive Entertainment Wireless Controller") == "playstation"
    assert profile_for("Logitech Dual Action") == "generic"
    assert apply_deadzone(0.1, 0.12) == 0.0 and apply_deadzone(1.0, 0.12) == 1.0
    assert 0 < apply_deadzone(0.5, 0.12) < 0.5
    pad = GamepadDevice(load_profile("xbox"), virtual=True)
    pad.connect()
    cmd = pad.read([joy_axis(5, 1.0), joy_axis(1, 0.05)])  # RT fully pressed, stick in the deadzone
    assert cmd.gripper == 1.0 and cmd.motion[1] == 0.0
    cmd = pad.read([joy_axis(5, -1.0)])
    assert cmd.gripper == -1.0


def test_timeouts_are_discarded_unless_kept(tmp_path):
    # Right held from the start; Reach times out after 100 steps: two time-outs
    schedule = {0: [key(pygame.K_RIGHT)], 230: tap(pygame.K_ESCAPE)}
    out, result, _ = run_session(tmp_path, KeyboardDevice(), schedule)
    assert result.saved == [] and result.discarded == 2
    out2 = tmp_path / "keep.hdf5"
    session = TeleopSession(
        "iltk/Reach-v0",
        out2,
        KeyboardDevice(),
        auto_save_after=0,
        event_hook=Timeline({0: [key(pygame.K_RIGHT)], 130: tap(pygame.K_ESCAPE)}),
        options=SessionOptions(control_freq=100, keep_timeouts=True),
    )
    assert len(session.run().saved) == 1
    with DemoFile(out2) as f:
        assert f.num_samples("demo_0") == 100 and not f.demo_attrs("demo_0")["success"]


def test_record_with_narrow_starts(tmp_path):
    schedule = {
        0: [key(pygame.K_RIGHT)],
        3: tap(pygame.K_RETURN),
        6: tap(pygame.K_RETURN),
        8: tap(pygame.K_ESCAPE),
    }
    out, result, _ = run_session(tmp_path, KeyboardDevice(), schedule, init_spread=0.0, seed=5)
    assert len(result.saved) == 2
    with DemoFile(out) as f:
        assert f.env_args["env_kwargs"]["init_spread"] == 0.0  # replays on the same layouts
        first, second = (f.episode(d)["states"][0] for d in f.demos)
    np.testing.assert_array_equal(first, second)  # seeds 5 and 6, one layout
    with pytest.raises(ValueError, match="iltk tasks only"):
        TeleopSession("Pendulum-v1", tmp_path / "p.hdf5", KeyboardDevice(), init_spread=0.5)


def test_episodes_start_at_the_first_input(tmp_path):
    # nobody touches anything for 150 polls (longer than Reach's 100-step limit), then
    # Right is held from poll 150 and Enter comes with poll 160 (that step is the episode's
    # last): 11 steps, none before the input
    schedule = {150: [key(pygame.K_RIGHT)], 160: tap(pygame.K_RETURN), 162: tap(pygame.K_ESCAPE)}
    out, result, timeline = run_session(tmp_path, KeyboardDevice(), schedule)
    assert len(result.saved) == 1 and result.discarded == 0
    with DemoFile(out) as f:
        actions = f.read("demo_0", "actions")
    assert len(actions) == 11 and (actions[:, 0] == 1.0).all()


def test_max_steps_and_gripper_reset_per_episode(tmp_path):
    schedule = {
        0: [key(pygame.K_RIGHT), *tap(pygame.K_SPACE)],  # move, gripper closed
        20: tap(pygame.K_SPACE) + tap(pygame.K_SPACE),  # (toggled twice: still closed)
        30: tap(pygame.K_ESCAPE),
    }
    out, result, _ = run_session(
        tmp_path, KeyboardDevice(), schedule, task="iltk/Lift-v0", max_steps=8, keep_timeouts=True
    )
    with DemoFile(out) as f:
        first, second = (f.read(d, "actions") for d in f.demos[:2])
    assert len(first) == 8  # --max-steps
    assert first[0, 3] == 1.0  # closed in the first episode
    assert second[0, 3] == -1.0  # a new episode starts with the gripper open


def test_fine_control_and_the_workspace(tmp_path):
    # Up held for 150 steps (1.5 s at 100 Hz: 0.7 m at full speed), Shift for the first 10
    schedule = {
        0: [key(pygame.K_LSHIFT), key(pygame.K_UP)],
        10: [key(pygame.K_LSHIFT, down=False)],
        150: tap(pygame.K_RETURN),
        152: tap(pygame.K_ESCAPE),
    }
    out, result, _ = run_session(tmp_path, KeyboardDevice(), schedule, max_steps=300)
    with DemoFile(out) as f:
        actions = f.read("demo_0", "actions")
        states = f.read("demo_0", "states")
    np.testing.assert_allclose(actions[:10, 1], 0.2)  # fine: a fifth of the speed
    np.testing.assert_allclose(actions[10:, 1], 1.0)
    env = make_env("iltk/Reach-v0")
    ys = []
    for s in states:
        env.unwrapped.set_state(s)
        ys.append(env.unwrapped._eef()[1])
    # within 2 mm: the velocity actuator brakes over ~10 ms (at 100 Hz, 1 cm a step)
    assert max(ys) <= 0.25 + 2e-3, "the effector left Reach's workspace (y <= 0.25 m)"
    assert max(ys) > 0.24  # it did get to the face


def test_keys_of_the_mode_and_the_second_view(tmp_path):
    from teleop.devices import bindings_for

    record = " ".join(bindings_for("keyboard", "record", 3))
    assert "take over" not in record and "gripper" not in record and "W / S" in record
    correct = " ".join(bindings_for("gamepad", "hg-dagger", 4))
    assert "RB (held): take over" in correct and "RT: close the gripper" in correct
    planar = " ".join(bindings_for("keyboard", "record", 2, views=1))
    assert "W / S" not in planar and "V:" not in planar
    # V swaps the main and the panel's camera; the window draws both
    schedule = {0: [key(pygame.K_RIGHT)], 2: tap(pygame.K_v), 4: tap(pygame.K_ESCAPE)}
    session = TeleopSession(
        "iltk/Reach-v0",
        tmp_path / "v.hdf5",
        KeyboardDevice(),
        event_hook=Timeline(schedule),
        options=SessionOptions(control_freq=100),
    )
    assert session.views == ["wide", "top"] and session.view == 0  # the whole workspace first
    session.run()
    assert session.view == 1


def test_readme_controls_table_matches_the_window():
    from teleop.devices import KEY_BINDINGS, PAD_BINDINGS, SPACEMOUSE_BINDINGS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("## Teleop controls")[1].split("\n\n")[2]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    for column, bindings in ((1, KEY_BINDINGS), (2, PAD_BINDINGS), (3, SPACEMOUSE_BINDINGS)):
        cells = [r[column] for r in rows if r[column] != "-"]
        for name, what in bindings.items():
            row = next((r for r in rows if r[column].startswith(name)), None)
            assert row is not None, f"README's controls table lacks {name!r} ({what})"
        assert len(cells) == len(bindings), f"README lists keys the window does not: {cells}"


def test_verify_replays_an_episode_longer_than_the_tasks_limit_whole(tmp_path):
    """Recorded with --max-steps 200 and saved at step 131, an episode is verified over its
    131 steps, not cut at Reach's default limit of 100."""
    from iltk.replay import verify_file

    schedule = {
        0: [key(pygame.K_RIGHT)],
        60: [key(pygame.K_RIGHT, False)],
        130: tap(pygame.K_RETURN),
    }
    schedule[132] = tap(pygame.K_ESCAPE)
    out, result, _ = run_session(tmp_path, KeyboardDevice(), schedule, max_steps=200)
    assert len(result.saved) == 1
    with DemoFile(out) as f:
        length = len(f.episode(f.demos[0])["actions"])
        assert f.env_args["max_episode_steps"] == 200  # stored with the data
    assert length > 100
    (div,) = verify_file(out)
    assert div.steps == length and div.exact


def test_next_on_the_last_episode_says_so_instead_of_restarting(recorded):
    """N on the last episode (and P on the first) keeps the frame and says where it is."""
    with DemoFile(recorded) as f:
        n = len(f.demos)
    banners = []
    schedule = {1: tap(pygame.K_SPACE), 2: tap(pygame.K_RIGHT), 3: tap(pygame.K_RIGHT)}
    schedule[4] = tap(pygame.K_n)
    last = replay_window(
        recorded, n - 1, max_ticks=8, event_hook=Timeline(schedule), banners=banners
    )
    assert last == n - 1
    assert f"this is the last episode ({n} of {n})" in banners[4:]
    banners.clear()
    replay_window(
        recorded, 0, max_ticks=4, event_hook=Timeline({1: tap(pygame.K_p)}), banners=banners
    )
    assert f"this is the first episode (1 of {n})" in banners
