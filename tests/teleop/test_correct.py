"""Correcting a policy at the gamepad: HG-DAgger takeover, DAgger labelling, retraining."""

import sys
from pathlib import Path

import numpy as np
import pygame
import pytest

from iltk.data import DemoFile
from iltk.envs import make_env
from iltk.policies import load_policy
from teleop.devices import GamepadDevice, load_profile
from teleop.options import SessionOptions
from teleop.session import TeleopSession

sys.path.insert(0, str(Path(__file__).parent))
from timeline import Timeline, joy_axis, joy_button  # noqa: E402


@pytest.fixture
def reach_policy(reach_bc):
    return reach_bc


def test_hg_dagger_takeover(tmp_path, reach_policy):
    schedule = {
        0: [joy_axis(0, -1.0)],  # the person pushes -x (only counts while in control)
        5: [joy_button(5)],  # RB held: take over
        15: [joy_button(5, down=False)],  # released: hand back
        20: [joy_button(0)],  # A: save
        21: [joy_button(7)],  # Start: quit
    }
    session = TeleopSession(
        "iltk/Reach-v0",
        tmp_path / "c.hdf5",
        GamepadDevice(load_profile("xbox"), virtual=True),
        mode="hg-dagger",
        policy=load_policy(reach_policy),
        auto_save_after=0,
        event_hook=Timeline(schedule),
        options=SessionOptions(control_freq=100),
    )
    result = session.run()
    assert len(result.saved) == 1 and result.interventions == 10
    with DemoFile(tmp_path / "c.hdf5") as f:
        ep = f.episode("demo_0")
        assert f.demo_attrs("demo_0")["source"] == "hg-dagger"
    inter = ep["intervention"]
    assert inter.tolist() == [False] * 5 + [True] * 10 + [False] * 6
    np.testing.assert_array_equal(ep["actions_executed"][inter], np.tile([-1, 0, 0], (10, 1)))
    np.testing.assert_array_equal(ep["actions"][inter], np.tile([-1, 0, 0], (10, 1)))
    np.testing.assert_allclose(ep["actions_executed"][~inter], ep["policy_actions"][~inter])


def test_dagger_mode_records_the_stick_as_label(tmp_path, reach_policy):
    schedule = {0: [joy_axis(1, -1.0)], 8: [joy_button(0)], 9: [joy_button(7)]}
    session = TeleopSession(
        "iltk/Reach-v0",
        tmp_path / "d.hdf5",
        GamepadDevice(load_profile("xbox"), virtual=True),
        mode="dagger",
        policy=load_policy(reach_policy),
        beta=0.0,
        auto_save_after=0,
        event_hook=Timeline(schedule),
        options=SessionOptions(control_freq=100),
    )
    session.run()
    with DemoFile(tmp_path / "d.hdf5") as f:
        ep = f.episode("demo_0")
    np.testing.assert_array_equal(ep["actions"], np.tile([0, 1, 0], (9, 1)))  # the person's label
    np.testing.assert_allclose(ep["actions_executed"], ep["policy_actions"])  # the policy acted


def test_retrain_in_background_swaps_the_policy(tmp_path, reach_policy):
    state = {}

    def hook(tick):
        if tick == 0:
            pygame.event.post(joy_button(5))  # take over for the whole first episode
            pygame.event.post(joy_axis(0, 1.0))
        if tick == 10:
            pygame.event.post(joy_button(0))  # save -> retrain starts
        if tick == 12:
            state["proc"] = session.retrain_proc is not None
            session.poll_retrain(wait=True)  # the person waits for it
        if tick == 14:
            pygame.event.post(joy_button(0))  # save again -> the next episode uses the new policy
        if tick == 16:
            pygame.event.post(joy_button(7))

    session = TeleopSession(
        "iltk/Reach-v0",
        tmp_path / "r.hdf5",
        GamepadDevice(load_profile("xbox"), virtual=True),
        mode="hg-dagger",
        policy=load_policy(reach_policy),
        auto_save_after=0,
        event_hook=hook,
        retrain_every=1,
        retrain_steps=20,
        run_dir=tmp_path / "retrain",
        options=SessionOptions(control_freq=100),
    )
    session.run()
    assert state["proc"]
    assert session.policy_version >= 1
    assert (tmp_path / "retrain" / "retrain_1" / "last" / "model.safetensors").exists()


def test_cli_refuses_mismatched_policy_and_task(reach_policy, tmp_path, capsys):
    from iltk.cli import main as cli_main

    assert (
        cli_main(
            [
                "correct",
                "--policy",
                str(reach_policy),
                "--task",
                "iltk/Lift-v0",
                "--out",
                str(tmp_path / "x.hdf5"),
                "--input",
                "keyboard",
            ]
        )
        == 2
    )
    assert "action dim 4, but the policy was trained on 9 and 3" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "replay",
                "--policy",
                str(reach_policy),
                "--task",
                "iltk/Push-v0",
                "--video",
                str(tmp_path / "v.mp4"),
            ]
        )
        == 2
    )
    push_dim = make_env("iltk/Push-v0").observation_space.shape[0]
    assert f"iltk/Push-v0 has observation dim {push_dim}" in capsys.readouterr().err
    assert cli_main(["replay", str(tmp_path / "missing.hdf5")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "x.hdf5").exists()  # nothing was written


def test_cli_corrects_on_the_start_spread_the_policy_was_trained_on(
    reach_policy, tmp_path, monkeypatch
):
    import json
    import shutil

    import teleop.session
    from iltk.cli import main as cli_main

    policy = tmp_path / "narrow"
    shutil.copytree(reach_policy, policy)
    config = json.loads((policy / "config.json").read_text())
    config["extra"]["env_kwargs"] = {"init_spread": 0.3}
    (policy / "config.json").write_text(json.dumps(config))
    seen = []

    class Recorder:  # stands in for the window: records what the session was asked for
        def __init__(self, task, out, device, options, **kw):
            seen.append(kw["init_spread"])

        def run(self):
            return type("Result", (), {"saved": [], "interventions": 0})()

    monkeypatch.setattr(teleop.session, "TeleopSession", Recorder)
    monkeypatch.delenv("SDL_VIDEODRIVER")  # the command refuses a window nobody could see
    args = ["correct", "--policy", str(policy), "--out", str(tmp_path / "c.hdf5")]
    assert cli_main([*args, "--input", "keyboard"]) == 0
    assert cli_main([*args, "--input", "keyboard", "--init-spread", "1"]) == 0
    assert seen == [0.3, 1.0]


def test_idle_correction_sessions_save_and_retrain_nothing(tmp_path, reach_policy):
    """Nobody at the pad: an episode started by a brief touch times out unsaved, a save
    with no takeover (hg-dagger) keeps nothing, and no retraining runs on empty labels."""
    for mode, schedule in (
        # a touch of the stick starts the episode, then nothing until Reach's time limit
        ("dagger", {0: [joy_axis(1, -1.0)], 2: [joy_axis(1, 0.0)], 130: [joy_button(7)]}),
        # the stick moves but nobody takes over, then A (save), then idle
        (
            "hg-dagger",
            {
                0: [joy_axis(0, -1.0)],
                3: [joy_axis(0, 0.0)],
                20: [joy_button(0)],
                60: [joy_button(7)],
            },
        ),  # fmt: skip
    ):
        out = tmp_path / f"{mode}.hdf5"
        session = TeleopSession(
            "iltk/Reach-v0",
            out,
            GamepadDevice(load_profile("xbox"), virtual=True),
            mode=mode,
            policy=load_policy(reach_policy),
            auto_save_after=0,
            event_hook=Timeline(schedule),
            retrain_every=1,
            retrain_steps=5,
            run_dir=tmp_path / f"retrain_{mode}",
            options=SessionOptions(control_freq=200),
        )
        result = session.run()
        assert result.saved == [] and result.discarded == 1, mode
        assert session.retrain_round == 0 and not (tmp_path / f"retrain_{mode}").exists()
        with DemoFile(out) as f:
            assert f.demos == []
        # the session idled after that episode: no step ran while nobody was there
        assert result.steps == (100 if mode == "dagger" else 21)


def test_dagger_labels_only_where_the_person_gave_input(tmp_path, reach_policy):
    from iltk.data.dataset import DemoDataset

    schedule = {
        0: [joy_axis(1, -1.0)],
        5: [joy_axis(1, 0.0)],
        12: [joy_button(0)],
        13: [joy_button(7)],
    }
    out = tmp_path / "d.hdf5"
    TeleopSession(
        "iltk/Reach-v0",
        out,
        GamepadDevice(load_profile("xbox"), virtual=True),
        mode="dagger",
        policy=load_policy(reach_policy),
        auto_save_after=0,
        event_hook=Timeline(schedule),
        options=SessionOptions(control_freq=100),
    ).run()
    with DemoFile(out) as f:
        ep = f.episode("demo_0")
    assert ep["has_label"].tolist() == [True] * 5 + [False] * 8
    assert (ep["policy_version"] == 0).all()
    ds = DemoDataset(out)
    assert ds.weights.tolist() == [1.0] * 5 + [0.0] * 8  # unlabelled steps never train
