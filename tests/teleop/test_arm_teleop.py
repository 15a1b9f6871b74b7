"""Teleop in 6-DoF on the arm: keyboard and pad rotations reach the recorded actions and
turn the gripper; a profile that cannot steer the arm is refused before anything is written."""

import sys
from pathlib import Path

import numpy as np
import pygame
import pytest

from iltk.data import DemoFile
from iltk.envs.panda import yaw_of
from teleop.devices import (
    Command,
    GamepadDevice,
    KeyboardDevice,
    bindings_for,
    check_profile_for_task,
    command_to_action,
    load_profile,
)
from teleop.options import SessionOptions
from teleop.session import TeleopSession

sys.path.insert(0, str(Path(__file__).parent))
from timeline import Timeline, joy_axis, joy_button, key, tap  # noqa: E402

ARM = "iltk/PandaLift-v0"


def hat(x, y):
    return pygame.event.Event(pygame.JOYHATMOTION, hat=0, value=(x, y), instance_id=0, joy=0)


def session_on(tmp_path, name, device, schedule, task=ARM, control_freq=100):
    """A recording session (not yet run) driven by a timeline of posted events."""
    return TeleopSession(
        task,
        tmp_path / name,
        device,
        auto_save_after=0,
        event_hook=Timeline(schedule),
        options=SessionOptions(control_freq=control_freq),
    )


def record(tmp_path, device, schedule):
    return tmp_path / "arm.hdf5", session_on(tmp_path, "arm.hdf5", device, schedule).run()


def test_keyboard_rotates_the_arm(tmp_path):
    schedule = {
        0: [key(pygame.K_u)],  # yaw +
        20: [key(pygame.K_u, False), key(pygame.K_UP)],  # then +y
        30: [key(pygame.K_UP, False), key(pygame.K_i)],  # then pitch +
        35: [key(pygame.K_i, False), *tap(pygame.K_RETURN)],
        37: tap(pygame.K_ESCAPE),
    }
    out, result = record(tmp_path, KeyboardDevice(), schedule)
    assert len(result.saved) == 1
    with DemoFile(out) as f:
        ep = f.episode(f.demos[0])
    a = ep["actions"]
    assert a.shape[1] == 7
    np.testing.assert_array_equal(a[:20], np.tile([0, 0, 0, 0, 0, 1, -1], (20, 1)))
    np.testing.assert_array_equal(a[20:30], np.tile([0, 1, 0, 0, 0, 0, -1], (10, 1)))
    np.testing.assert_array_equal(a[30:35], np.tile([0, 0, 0, 0, 1, 0, -1], (5, 1)))
    # 20 steps at 100 Hz of 1.5 rad/s: 0.3 rad of yaw commanded; the wrist follows it, late
    quat = ep["obs"]["robot0_eef_quat"]  # x y z w: the grip frame's rotation
    import mujoco

    mats = []
    for q in (quat[0], quat[20]):
        m = np.zeros(9)
        mujoco.mju_quat2Mat(m, np.array([q[3], q[0], q[1], q[2]], np.float64))
        mats.append(m.reshape(3, 3))
    assert 0.15 < yaw_of(mats[1]) - yaw_of(mats[0]) < 0.31


def test_pad_rotations_from_the_dpad_and_the_right_stick(tmp_path):
    xbox = load_profile("xbox")
    schedule = {
        0: [joy_axis(3, 1.0)],  # right stick right: yaw - (inverted)
        10: [joy_axis(3, 0.0), hat(1, 0)],  # D-pad right: roll +
        20: [hat(0, 1), joy_button(4)],  # D-pad up: pitch +, LB held: fine
        30: [hat(0, 0), joy_button(4, False), joy_button(0), joy_button(0, False)],  # A: save
        32: [joy_button(7)],  # Start: quit
    }
    out, result = record(tmp_path, GamepadDevice(xbox, virtual=True), schedule)
    assert len(result.saved) == 1
    with DemoFile(out) as f:
        a = f.episode(f.demos[0])["actions"]
    np.testing.assert_array_equal(a[:10], np.tile([0, 0, 0, 0, 0, -1, -1], (10, 1)))
    np.testing.assert_array_equal(a[10:20], np.tile([0, 0, 0, 1, 0, 0, -1], (10, 1)))
    np.testing.assert_allclose(a[20:30], np.tile([0, 0, 0, 0, 0.2, 0, -1], (10, 1)), atol=1e-6)


def test_a_profile_without_rotations_is_refused_on_the_arm(tmp_path):
    flat = load_profile("xbox")
    del flat["rotation"]
    with pytest.raises(ValueError, match="maps no roll, pitch, yaw"):
        check_profile_for_task(flat, 7)
    check_profile_for_task(flat, 3)  # Reach needs none
    out = tmp_path / "never.hdf5"
    with pytest.raises(ValueError, match="6-DoF"):
        TeleopSession(
            ARM, out, GamepadDevice(flat, virtual=True), options=SessionOptions(control_freq=100)
        )
    assert not out.exists() and not list(tmp_path.iterdir())
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"axes": {}, "buttons": {}, "gripper": {"button": 1}, "rotation": {"twist": {"axis": 2}}}'
    )
    with pytest.raises(ValueError, match="rotation 'twist'"):
        load_profile(str(bad))


def test_rotation_keys_are_listed_only_on_the_arm():
    arm = bindings_for("keyboard", "record", 7)
    reach = bindings_for("keyboard", "record", 3)
    assert any(line.startswith("U / O") for line in arm)
    assert not any(line.startswith(("U / O", "J / L", "I / K")) for line in reach)
    cmd = Command(rotation=np.array([1, 0, -1], np.float32), fine=True)
    np.testing.assert_allclose(command_to_action(cmd, 7), [0, 0, 0, 0.2, 0, -0.2, -1])


def test_a_real_sdl_joystick_drives_the_device_and_too_few_axes_are_refused():
    """A virtual joystick in pygame's own SDL: real device and motion events."""
    from virtual_pad import VirtualPad

    from teleop.devices import DeviceNotFound

    pygame.init()
    pygame.display.set_mode((16, 16))
    pygame.event.get()
    try:
        with VirtualPad(controller=False) as pad:  # SDL knows no layout: the raw profile
            dev = GamepadDevice(load_profile("xbox"), 0)
            dev.connect()
            pad.axis(0, 1.0)  # left stick right
            pad.axis(3, 1.0)  # axis 3: the xbox profile's yaw
            pad.hat(0, 1)  # D-pad up: pitch
            pygame.event.pump()
            cmd = dev.read(pygame.event.get())
            assert cmd.connected and cmd.motion[0] == 1.0
            np.testing.assert_array_equal(cmd.rotation, [0, 1, -1])
        removed = dev.read(pygame.event.get())  # the detach is a real device-removed event
        assert not removed.connected
        with VirtualPad(axes=3, controller=False):
            with pytest.raises(
                DeviceNotFound, match="has 3 axes but the profile 'xbox' reads axis 5"
            ):
                GamepadDevice(load_profile("xbox"), 0).connect()
    finally:
        pygame.display.quit()


def test_only_the_pad_in_use_counts():
    """Two pads: unplugging or moving the other one changes nothing; unplugging ours does."""
    from virtual_pad import VirtualPad

    pygame.init()
    pygame.display.set_mode((16, 16))
    pygame.event.get()
    try:
        ours, other = VirtualPad(controller=False), VirtualPad(controller=False)
        dev = GamepadDevice(load_profile("xbox"), ours.index)
        dev.connect()
        pygame.event.pump()
        dev.read(pygame.event.get())
        ours.axis(0, 1.0)
        other.axis(0, -1.0)
        other.axis(1, 1.0)
        pygame.event.pump()
        cmd = dev.read(pygame.event.get())
        assert cmd.connected and cmd.motion[0] == 1.0 and cmd.motion[1] == 0.0
        other.close()  # the other pad unplugged: a real device-removed event
        cmd = dev.read(pygame.event.get())
        assert cmd.connected and cmd.motion[0] == 1.0
        ours.close()
        assert not dev.read(pygame.event.get()).connected
    finally:
        pygame.display.quit()


def test_sdl_controller_mapping_reads_a_pad_in_sdls_order():
    """A pad whose raw axes come in SDL's order (LX LY RX RY LT RT, triggers resting at -1):
    the raw xbox profile reads the resting left trigger as z = +1 (the effector rose out of
    view); through SDL's controller mapping it rests at 0, and every control lands."""
    from virtual_pad import VirtualPad

    from teleop.devices import ControllerDevice, DeviceNotFound, make_device

    pygame.init()
    pygame.display.set_mode((16, 16))
    pygame.event.get()
    try:
        # buttons in SDL's order: a b x y back guide start lstick rstick lshoulder rshoulder
        # dpup dpdown dpleft dpright
        with VirtualPad() as pad:
            pygame.event.pump()
            # the raw xbox profile (XInput's order: LX LY LT RX RY RT) would read the resting
            # left trigger as z = +1: refused, naming the axis and the way out
            with pytest.raises(DeviceNotFound, match="reads move z from axis 4, which SDL maps"):
                GamepadDevice(load_profile("xbox"), 0).connect()
            dev = make_device("auto")  # SDL knows the pad: the controller layout
            assert isinstance(dev, ControllerDevice)
            rest = dev.read(pygame.event.get())
            np.testing.assert_array_equal(rest.motion, [0, 0, 0])
            assert rest.gripper == -1.0 and not rest.triggered
            pad.axis(0, 1.0)  # left stick right: +x
            pad.axis(3, -1.0)  # right stick up: +z
            pad.axis(2, 1.0)  # right stick right: yaw -
            pad.axis(5, 1.0)  # right trigger pulled: gripper closed
            pad.button(14)  # D-pad right: roll +
            pad.button(0)  # A: save
            pad.button(10)  # RB: takeover
            pygame.event.pump()
            cmd = dev.read(pygame.event.get())
            np.testing.assert_array_equal(cmd.motion, [1, 0, 1])
            assert dev.buttons["dpright"], dev.buttons
            np.testing.assert_array_equal(cmd.rotation, [1, 0, -1])
            assert cmd.gripper == 1.0 and cmd.takeover and cmd.triggered == {"save"}
            pygame.event.pump()
            assert dev.read(pygame.event.get()).triggered == set()  # edge-triggered
            check_profile_for_task(dev.profile, 7)
        assert not dev.read(pygame.event.get()).connected  # unplugged
    finally:
        pygame.display.quit()


def test_a_spacemouse_steers_all_six_axes():
    """A SpaceMouse is a 6-axis joystick to SDL: its profile maps the cap's push, lift, tilt
    and twist onto the arm's six velocities and its two buttons onto the gripper and save."""
    from virtual_pad import VirtualPad

    from teleop.devices import make_device

    pygame.init()
    pygame.display.set_mode((16, 16))
    pygame.event.get()
    try:
        with VirtualPad(axes=6, buttons=2, hats=0, controller=False) as mouse:
            dev = make_device("gamepad", "spacemouse", mouse.index)
            assert dev.bindings == "spacemouse"
            check_profile_for_task(dev.profile, 7)
            dev.read(pygame.event.get())
            for axis, value in enumerate([0.5, -1.0, -1.0, 0.0, 0.0, 1.0]):
                mouse.axis(axis, value)
            mouse.button(0)  # left button: the gripper toggles closed
            mouse.button(1)  # right button: save
            pygame.event.pump()
            cmd = dev.read(pygame.event.get())
            action = command_to_action(cmd, 7)
            np.testing.assert_allclose(action[:3], [(0.5 - 0.08) / 0.92, 1, 1], atol=1e-4)
            np.testing.assert_allclose(action[3:], [0, 0, -1, 1], atol=1e-4)
            assert cmd.triggered == {"save"}
    finally:
        pygame.display.quit()
    lines = bindings_for("spacemouse", "record", 7)
    assert "twist the cap: yaw (the arm)" in lines and "left button: toggle the gripper" in lines
    assert not any(
        "cap" in line and "(the arm)" in line for line in bindings_for("spacemouse", "record", 3)
    )


def test_the_panel_says_waiting_and_the_rate_counts_steps_only(tmp_path):
    from teleop import hud

    common = dict(task="iltk/Reach-v0", mode="record", episode=2, step=0, max_steps=400)
    common.update(control_freq=20.0, success=False, fine=False, missed_fraction=0.0)
    common.update(saved=2, out_name="f.hdf5")
    waiting = hud.status_lines(**common, hz=0.0, waiting=True)
    assert waiting[1] == "episode 2   waiting: starts at your first input"
    assert waiting[3].startswith("-/20 Hz")
    running = hud.status_lines(**common, hz=19.5)
    assert running[1] == "episode 2   step 0   20.0 s left" and running[3].startswith("19.5/20 Hz")
    # a session with a 0.3 s wait before its second episode: the rate shown is the steps'
    schedule = {0: [key(pygame.K_RIGHT)], 10: [key(pygame.K_RIGHT, False), *tap(pygame.K_RETURN)]}
    schedule[40] = [key(pygame.K_RIGHT)]
    schedule[50] = [key(pygame.K_RIGHT, False), *tap(pygame.K_RETURN)]
    schedule[52] = tap(pygame.K_ESCAPE)
    session = session_on(tmp_path, "r.hdf5", KeyboardDevice(), schedule, "iltk/Reach-v0", 50)
    result = session.run()
    assert len(result.saved) == 2
    assert result.achieved_hz > 35, result.achieved_hz  # 50 Hz held; the wait not counted


def test_save_then_quit_in_one_step_keeps_the_episode(tmp_path):
    """Enter and Esc arriving in the same poll: the episode is saved, then the session ends."""
    schedule = {0: [key(pygame.K_RIGHT)], 8: [*tap(pygame.K_RETURN), *tap(pygame.K_ESCAPE)]}
    session = session_on(tmp_path, "q.hdf5", KeyboardDevice(), schedule, "iltk/Reach-v0", 100)
    result = session.run()
    assert len(result.saved) == 1 and result.discarded == 0
    with DemoFile(tmp_path / "q.hdf5") as f:
        assert len(f.episode(f.demos[0])["actions"]) == 9


@pytest.mark.parametrize("size", [(640, 640), (1000, 700), (640, 480)])
@pytest.mark.parametrize("mode", ["record", "hg-dagger"])
def test_every_panel_line_is_inside_the_panel(size, mode):
    """The arm's keys (rotations included) and the status: no line cut off at the edge."""
    from teleop.window import TeleopWindow

    w = TeleopWindow(size)
    lines = [
        "iltk/PandaLift-v0   " + mode,
        "episode 3   step 7   4.4 s left",
        "success no   speed 100%",
        "19.8/20 Hz   missed 0.0%",
        "saved 2 -> arm.hdf5",
        "display frames skipped 3",
        "policy v2",
    ]
    w.show(
        np.zeros((240, 320, 3), np.uint8),
        lines,
        footer=bindings_for("keyboard", mode, 7),
        badge=("RECORDING", (230, 80, 70)),
        inset=np.full((168, 224, 3), 60, np.uint8),
        inset_label="agentview view",
    )
    _, panel = w.layout((240, 320))
    assert w.text_rects
    for i, r in enumerate(w.text_rects):
        assert panel.contains(r), f"{size} {mode}: text at {r} leaves the panel {panel}"
        others = w.text_rects[i + 1 :]
        assert r.collidelist(others) < 0, f"{size} {mode}: two lines overlap at {r}"
    w.close()


def test_the_display_gives_up_shadows_then_size_to_keep_up(tmp_path, monkeypatch):
    """Frames that cost more than the step leaves: the display drops its shadows (then its
    size), says so in the panel, and the control deadlines hold."""
    import time as _time

    from teleop import session as session_mod

    calls, drawn = [], []

    def slow_render(self, camera, size):
        shadows = session_mod.DISPLAY_LEVELS[self.display_level][1]
        calls.append((shadows, size))
        if self.result.steps:  # past the warm-up of every level and the first frame
            drawn.append(shadows)
        _time.sleep(0.04 if shadows else 0.004)  # a software frame with and without shadows
        return np.zeros((size[1], size[0], 3), np.uint8)

    monkeypatch.setattr(session_mod.TeleopSession, "render_view", slow_render)
    schedule = {0: [key(pygame.K_RIGHT)], 40: [*tap(pygame.K_RETURN)], 42: tap(pygame.K_ESCAPE)}
    session = session_on(tmp_path, "d.hdf5", KeyboardDevice(), schedule, "iltk/Reach-v0", 20)
    result = session.run()
    assert len(result.saved) == 1
    assert session.display_level >= 1
    assert any(line.startswith("display: no shadows") for line in session.hud())
    assert calls[-1][0] is False  # the last frames were drawn without shadows
    assert drawn == sorted(drawn, reverse=True), drawn  # no flapping back to shadows
    assert result.missed_deadlines <= 4, result.missed_deadlines


def test_the_display_takes_its_shadows_back_once_the_load_is_gone(tmp_path, monkeypatch):
    import time as _time

    from teleop import session as session_mod

    calls = []

    def render(self, camera, size):
        shadows = session_mod.DISPLAY_LEVELS[self.display_level][1]
        if self.result.steps:  # past the warm-up of every level and the first frame
            calls.append(shadows)
        busy = len(calls) < 20  # a burst of load, then cheap frames
        _time.sleep(0.04 if shadows and busy else 0.002)
        return np.zeros((size[1], size[0], 3), np.uint8)

    monkeypatch.setattr(session_mod.TeleopSession, "render_view", render)
    monkeypatch.setattr(session_mod, "DISPLAY_RETRY_S", 0.5)
    schedule = {0: [key(pygame.K_RIGHT)], 60: [*tap(pygame.K_RETURN)], 62: tap(pygame.K_ESCAPE)}
    session = session_on(tmp_path, "d.hdf5", KeyboardDevice(), schedule, "iltk/Reach-v0", 20)
    session.run()
    assert False in calls[:20]  # it gave the shadows up under the load
    assert calls[-1] is True and session.display_level == 0


def test_the_calibration_picture_shows_the_values():
    from teleop.calibrate import values_image

    rest = values_image({}, {}, {}, n_axes=6, n_buttons=15)
    moved = values_image({0: 1.0, 3: -0.5}, {2: True}, {0: (1, 0)}, n_axes=6, n_buttons=15)
    green = np.all(moved == (90, 210, 120), axis=2)
    assert green.sum() > 1000 and not np.all(rest == (90, 210, 120), axis=2).any()
    rows = np.nonzero(green.any(axis=1))[0]
    assert rows.min() < 30  # axis 0's bar is the first row of bars
    lit = np.all(moved == (240, 200, 60), axis=2)
    assert lit.sum() >= 18 * 18 + 8 * 8  # a held button and the hat's dot
    assert (rest > 60).mean() > 0.2  # tracks and buttons drawn even at rest: not a black box


def test_a_pause_for_an_unplugged_pad_shows_where_the_episode_stopped(tmp_path):
    xbox = load_profile("xbox")
    panels = []
    schedule = {
        0: [joy_axis(0, 1.0)],
        12: [pygame.event.Event(pygame.JOYDEVICEREMOVED, instance_id=0)],
        16: [pygame.event.Event(pygame.JOYDEVICEADDED, device_index=0)],
        20: [joy_button(7)],  # Start: quit
    }
    timeline = Timeline(schedule)
    session = TeleopSession(
        "iltk/Reach-v0",
        tmp_path / "p.hdf5",
        GamepadDevice(xbox, virtual=True),
        auto_save_after=0,
        event_hook=lambda tick: (timeline(tick), panels.append((tick, session.hud()[1]))),
        options=SessionOptions(control_freq=100),
    )
    session.run()
    paused = [line for tick, line in panels if 13 <= tick <= 16]
    assert paused and all("step 0 " not in line for line in paused), paused
    assert all(line.startswith("episode 0   step 1") for line in paused), paused


def _pad_session(tmp_path, name, script, **kw):
    """A session on a virtual SDL pad read through SDL's controller mapping; ``script`` maps
    a poll tick to what the hand does to the pad (a function of the VirtualPad holder)."""
    from virtual_pad import VirtualPad

    from teleop.devices import ControllerDevice, make_device

    pygame.init()
    pygame.display.set_mode((16, 16))
    pygame.event.get()
    holder = {"pad": VirtualPad()}
    try:
        device = make_device("auto")
        assert isinstance(device, ControllerDevice)

        def hook(tick):
            if tick in script:
                script[tick](holder)

        session = TeleopSession(
            "iltk/Reach-v0",
            tmp_path / name,
            device,
            auto_save_after=0,
            event_hook=hook,
            **kw,
            options=SessionOptions(control_freq=100),
        )  # fmt: skip
        return session, session.run()
    finally:
        holder["pad"].close()


def test_record_and_hot_plug_with_a_real_sdl_pad(tmp_path):
    """Left stick right, unplugged mid-episode (the session pauses), plugged back in, A
    saves, Start quits: SDL's own joystick code delivers every event."""
    from virtual_pad import VirtualPad

    def replug(h):
        h["pad"] = VirtualPad()

    script = {
        0: lambda h: h["pad"].axis(0, 1.0),
        10: lambda h: h["pad"].close(),  # unplugged
        20: replug,  # plugged back in: a new device, stick centred
        22: lambda h: h["pad"].axis(0, -1.0),
        30: lambda h: h["pad"].button(0),  # A: save
        31: lambda h: h["pad"].button(0, False),
        33: lambda h: h["pad"].button(6),  # Start: quit
    }
    session, result = _pad_session(tmp_path, "pad.hdf5", script)
    assert len(result.saved) == 1
    with DemoFile(tmp_path / "pad.hdf5") as f:
        a = f.episode(f.demos[0])["actions"]
    assert (a[:, 0] == 1.0).sum() >= 8 and (a[:, 0] == -1.0).sum() >= 6
    # no step ran while it was unplugged (else the ticks 10-20 would be steps with the
    # stick gone, x = 0); the replugged pad's centred stick is a step or two at most
    assert (a[:, 0] == 0.0).sum() <= 3, a[:, 0]


def test_correct_takes_over_on_the_pads_shoulder(tmp_path):
    from iltk.algos.supervised import TrainConfig, train
    from iltk.collect import collect_demos
    from iltk.policies import load_policy

    data = tmp_path / "reach.hdf5"
    collect_demos("iltk/Reach-v0", data, 2, progress=False)
    train(TrainConfig(dataset=data, out=tmp_path / "bc", steps=20, eval_episodes=0, progress=False))
    policy = load_policy(tmp_path / "bc" / "last")
    script = {
        0: lambda h: (h["pad"].button(10), h["pad"].axis(1, 1.0)),  # RB held, stick down: -y
        12: lambda h: (h["pad"].button(10, False), h["pad"].axis(1, 0.0)),  # hand back
        20: lambda h: h["pad"].button(0),  # A: save
        21: lambda h: h["pad"].button(0, False),
        23: lambda h: h["pad"].button(6),  # Start: quit
    }
    _, result = _pad_session(tmp_path, "c.hdf5", script, mode="hg-dagger", policy=policy)
    assert len(result.saved) == 1
    with DemoFile(tmp_path / "c.hdf5") as f:
        ep = f.episode(f.demos[0])
    inter = ep["intervention"]
    assert 10 <= inter.sum() <= 13 and inter[:10].all() and not inter[-5:].any()
    assert np.all(ep["actions"][inter][:, 1] == -1.0)  # the person's stick, as labels
