"""Every command a user runs on the arm, on a Panda task: collect (Cartesian and joint),
dataset verify, train, eval --video, replay --video, dagger, dart and finetune."""

import json

import numpy as np
import pytest

from iltk.cli import main as cli_main
from iltk.data import DemoFile

TASK = "iltk/PandaLift-v0"


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    """Ten expert episodes of the arm and a small BC policy trained on them."""
    root = tmp_path_factory.mktemp("arm")
    data = root / "demos.hdf5"
    assert cli_main(["collect", "--task", TASK, "--episodes", "10", "--out", str(data)]) == 0
    args = ["train", "--dataset", str(data), "--out", str(root / "bc"), "--steps", "300"]
    assert cli_main([*args, "--eval-episodes", "0"]) == 0
    return root


def test_collect_records_robomimic_keys_and_replays_exactly(arm, capsys):
    data = arm / "demos.hdf5"
    with DemoFile(data) as f:
        assert len(f.demos) == 10
        keys = set(f.obs_keys(f.demos[0]))
        assert keys == {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"}
        ep = f.episode(f.demos[0])
        assert ep["actions"].shape[1] == 7 and f.demo_attrs(f.demos[0])["success"]
    capsys.readouterr()
    assert cli_main(["dataset", "verify", str(data)]) == 0
    assert "10/10 episodes re-simulate exactly" in capsys.readouterr().out


def test_joint_mode_collects_and_replays(tmp_path, capsys):
    data = tmp_path / "joint.hdf5"
    args = ["collect", "--task", TASK, "--episodes", "3", "--out", str(data)]
    assert cli_main([*args, "--action-mode", "joint"]) == 0
    with DemoFile(data) as f:
        assert f.env_args["env_kwargs"]["action_mode"] == "joint"
        assert f.episode(f.demos[0])["actions"].shape[1] == 8
    assert cli_main(["dataset", "verify", str(data)]) == 0
    assert "3/3 episodes re-simulate exactly" in capsys.readouterr().out
    # appending Cartesian episodes to a joint-space file is refused before any work
    assert cli_main(args) == 2
    assert "action_mode" in capsys.readouterr().err
    with DemoFile(data) as f:
        assert len(f.demos) == 3


def test_eval_and_replay_write_videos(arm, capsys):
    video = arm / "eval.mp4"
    assert (
        cli_main(
            ["eval", "--policy", str(arm / "bc" / "last"), "--episodes", "2", "--video", str(video)]
        )
        == 0
    )
    assert video.stat().st_size > 1000
    replay = arm / "replay.mp4"
    assert (
        cli_main(["replay", str(arm / "demos.hdf5"), "--episode", "1", "--video", str(replay)]) == 0
    )
    assert replay.stat().st_size > 1000
    assert "iltk/PandaLift-v0: success" in capsys.readouterr().out


def test_dagger_and_dart_run_on_the_arm(tmp_path):
    common = [
        "--task", TASK, "--rounds", "1", "--episodes-per-round", "2", "--initial-demos", "2",
        "--eval-episodes", "2", "--num-envs", "1", "--learner.steps-per-round", "30",
    ]  # fmt: skip
    assert cli_main(["dagger", *common, "--out", str(tmp_path / "d")]) == 0
    assert (
        cli_main(["dagger", *common, "--out", str(tmp_path / "h"), "--variant", "hg-dagger"]) == 0
    )
    assert cli_main(["dart", *common, "--out", str(tmp_path / "t")]) == 0
    for run in ("d", "h", "t"):
        rows = json.loads((tmp_path / run / "rounds.json").read_text())
        assert len(rows) == 2
        with DemoFile(tmp_path / run / "data.hdf5") as f:
            ep = f.episode(f.demos[-1])
            assert ep["actions"].shape[1] == 7 and np.all(np.isfinite(ep["actions"]))


def test_finetune_runs_on_the_arm(arm):
    out = arm / "ft"
    args = ["finetune", "--policy", str(arm / "bc" / "last"), "--out", str(out)]
    assert (
        cli_main(
            [*args, "--total-timesteps", "256", "--ppo.n-steps", "128", "--eval-episodes", "2"]
        )
        == 0
    )
    assert (out / "best").is_dir() and (out / "last").is_dir()
    assert cli_main(["eval", "--policy", str(out / "last"), "--episodes", "1"]) == 0
