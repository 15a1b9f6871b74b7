"""Faults around training runs: kills at any moment, full disks, earlier runs, bad checkpoints.

Before issue 14 a SIGKILL during `iltk train` could leave ``last/config.json`` empty (every
later --resume failed) or config and optimizer state from different steps, and a second
run into the same --out silently mixed with the first.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from iltk.algos.supervised import TrainConfig, train
from iltk.cli import main as cli_main
from iltk.data import DemoFile
from iltk.files import OutputError
from iltk.policies import CheckpointError, load_checkpoint

pytestmark = pytest.mark.expensive

ILTK = [sys.executable, "-m", "iltk.cli"]


@pytest.fixture
def reach(reach_demos):
    return reach_demos


def _checkpoint_step(folder) -> int | None:
    """The step of a complete checkpoint folder, checking its parts agree (None: absent)."""
    if not folder.exists():
        return None
    policy, extra = load_checkpoint(folder)  # config.json and weights parse and fit
    state = torch.load(folder / "train_state.pt", weights_only=False)
    assert state["step"] == extra["step"], "config and optimizer state from different steps"
    return int(extra["step"])


def test_sigkill_at_any_moment_then_resume(tmp_path, reach):
    out = tmp_path / "run"
    cmd = [
        *ILTK, "train", "--dataset", str(reach), "--out", str(out), "--steps", "400",
        "--eval-every", "10", "--eval-episodes", "0", "--no-progress", "--bc.hidden", "64", "64",
        "--device", "cpu",
    ]  # fmt: skip
    rng = np.random.default_rng(0)
    seen = 0
    kills = 0
    for attempt in range(6):
        proc = subprocess.Popen(
            cmd + (["--resume"] if attempt else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        # wait until a checkpoint newer than any seen is complete, then kill at a random
        # moment of the following work (often in the middle of writing the next one)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                step = _checkpoint_step(out / "last")
            except (AssertionError, CheckpointError, OSError, RuntimeError):
                step = None  # swapped between two of our reads while it runs: look again
            if step is not None and step > seen:
                seen = step
                break
            time.sleep(0.01)
        if proc.poll() is not None:
            break  # finished before the kill
        time.sleep(float(rng.uniform(0.0, 0.2)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        step = _checkpoint_step(out / "last")
        assert step is not None and step >= seen, "a reported checkpoint was lost"
        config = json.loads((out / "config.json").read_text())  # never empty or torn
        assert config["steps"] == 400
    assert kills >= 1
    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert _checkpoint_step(out / "last") == 400
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary folders left"
    steps = [int(line.split(",")[0]) for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps), "metrics logged after the resumed checkpoint were kept twice"


def test_full_disk_during_training_names_the_resumable_checkpoint(tmp_path, reach, monkeypatch):
    import iltk.policies.base as base

    real = base.write_bytes
    calls = {"n": 0}

    def fails_on_third_checkpoint(path, data, durable=True):
        if path.name == "train_state.pt":
            calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data, durable)

    monkeypatch.setattr(base, "write_bytes", fails_on_third_checkpoint)
    cfg = dict(dataset=reach, out=tmp_path / "run", eval_episodes=0, progress=False)
    with pytest.raises(OutputError, match=r"the disk is full; .*last holds the last complete "
                       r"checkpoint \(step 20\); .* --resume"):  # fmt: skip
        train(TrainConfig(steps=100, eval_every=10, **cfg))
    assert _checkpoint_step(tmp_path / "run" / "last") == 20
    monkeypatch.setattr(base, "write_bytes", real)
    res = train(TrainConfig(steps=40, eval_every=10, resume=True, **cfg))
    assert res["steps"] == 40


def test_earlier_run_is_not_overwritten_without_asking(tmp_path, reach, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(reach), "--out", str(out), "--steps", "5",
            "--eval-episodes", "0", "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 0
    capsys.readouterr()
    before = (out / "last" / "model.safetensors").read_bytes()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "holds an earlier run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "last" / "model.safetensors").read_bytes() == before
    assert cli_main(argv + ["--overwrite", "--seed", "3"]) == 0
    assert (out / "last" / "model.safetensors").read_bytes() != before
    # --out naming a file
    f = tmp_path / "a_file"
    f.write_text("keep me")
    assert cli_main(["train", "--dataset", str(reach), "--out", str(f), "--steps", "5"]) == 2
    assert "is a file; --out must name a folder" in capsys.readouterr().err
    assert f.read_text() == "keep me"


def test_second_dagger_run_into_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "dagger"
    argv = ["dagger", "--task", "iltk/Reach-v0", "--out", str(out), "--rounds", "0",
            "--initial-demos", "2", "--eval-episodes", "1", "--learner.steps-per-round", "5",
            "--num-envs", "1"]  # fmt: skip
    assert cli_main(argv) == 0
    capsys.readouterr()
    before = (out / "data.hdf5").read_bytes()
    assert cli_main(argv) == 2
    assert "holds an earlier run" in capsys.readouterr().err
    assert (out / "data.hdf5").read_bytes() == before
    assert cli_main(argv + ["--overwrite"]) == 0
    for cmd in ("dagger", "dart"):  # no scripted expert: said plainly, nothing written
        assert cli_main([cmd, "--task", "Reacher-v5", "--out", str(tmp_path / f"new_{cmd}")]) == 2
        assert "Reacher-v5 has no scripted expert" in capsys.readouterr().err
        assert not (tmp_path / f"new_{cmd}").exists()


def test_damaged_checkpoints_get_one_clear_line(tmp_path, reach, capsys):
    out = tmp_path / "run"
    train(TrainConfig(dataset=reach, out=out, steps=5, eval_episodes=0, progress=False))
    weights = out / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert cli_main(["eval", "--policy", str(out / "best"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{weights}: damaged or truncated" in err and "Traceback" not in err
    (out / "last" / "config.json").write_text('{"policy": "bc", "config": ')
    with pytest.raises(CheckpointError, match="last/config.json: damaged, not valid JSON"):
        load_checkpoint(out / "last")
    assert (
        cli_main(["replay", "--policy", str(out / "last"), "--video", str(tmp_path / "v.mp4")]) == 2
    )
    assert "config.json: damaged, not valid JSON" in capsys.readouterr().err
    # a config without the sizes the weights were built for (it warned and said "do not fit")
    payload = json.loads((out / "best" / "config.json").read_text())
    del payload["config"]["state_dim"]
    (out / "best" / "config.json").write_text(json.dumps(payload))
    assert cli_main(["eval", "--policy", str(out / "best"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "the bc config lacks state_dim" in err and "Warning" not in err, err


def test_a_truncated_train_state_is_named_on_resume(tmp_path, reach, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(reach), "--out", str(out), "--steps", "5", "--no-progress"]
    argv += ["--eval-episodes", "0"]
    assert cli_main(argv) == 0
    state = out / "last" / "train_state.pt"
    state.write_bytes(state.read_bytes()[:500])
    capsys.readouterr()
    assert cli_main([*argv[:6], "10", *argv[7:], "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{state}: damaged, the run cannot resume from it" in err, err
    assert "--overwrite" in err and "Traceback" not in err
    assert (out / "best").is_dir()  # a failed resume removes nothing of the run


def test_eval_of_a_reward_folder_says_it_is_a_reward(tmp_path, capsys):
    folder = tmp_path / "reward"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"reward": "mlp", "config": {}}))
    assert cli_main(["eval", "--policy", str(folder)]) == 2
    assert "a learned reward, not a policy" in capsys.readouterr().err


def test_video_paths_are_checked_before_any_episode(tmp_path, reach, capsys, monkeypatch):
    out = tmp_path / "run"
    train(TrainConfig(dataset=reach, out=out, steps=5, eval_episodes=0, progress=False))
    import iltk.evaluate as evaluate

    def must_not_run(*args, **kwargs):
        raise AssertionError("episodes ran before the output was checked")

    monkeypatch.setattr(evaluate, "evaluate_policy", must_not_run)
    assert cli_main(["eval", "--policy", str(out / "last"), "--video", str(tmp_path)]) == 2
    assert "--video needs a video file name" in capsys.readouterr().err
    (tmp_path / "dir.mp4").mkdir()
    assert (
        cli_main(["eval", "--policy", str(out / "last"), "--video", str(tmp_path / "dir.mp4")]) == 2
    )
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_dagger_stopped_mid_round_says_so_and_resumes(tmp_path, how):
    """dagger interrupted while its learner trains used to exit 141 with nothing printed;
    now: one line, 130 (Ctrl-C) or 143 (SIGTERM), no worker traceback, and --resume goes on."""
    import contextlib

    out = tmp_path / "d"
    cmd = [*ILTK, "dagger", "--task", "iltk/Reach-v0", "--episodes-per-round", "2"]
    cmd += ["--initial-demos", "2", "--eval-episodes", "1", "--num-envs", "2", "--out", str(out)]
    cmd += ["--learner.steps-per-round", "1500", "--learner.device", "cpu", "--rounds", "3"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C reaches a terminal's whole process group
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not (out / "data.hdf5.episodes").is_dir():  # round 0 collected: its learner trains
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"dagger did not start its rounds: {proc.communicate()}")
        time.sleep(0.05)
    time.sleep(0.5)
    if how == "Ctrl-C":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == {"SIGTERM": 143, "Ctrl-C": 130}[how], err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iltk: "), err
    assert ("terminated" if how == "SIGTERM" else "interrupted") in lines[0]
    with DemoFile(out / "data.hdf5") as f:  # round 0's episodes are kept
        assert len(f.demos) >= 2
    shorter = [a if a != "3" else "0" for a in cmd]  # --rounds may change on --resume
    res = subprocess.run([*shorter, "--resume"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "starting at round 0" in res.stderr  # it was stopped in round 0's training
    assert len(json.loads((out / "rounds.json").read_text())) == 1
