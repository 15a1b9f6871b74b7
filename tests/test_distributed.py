"""Data-parallel training: `iltk train --nproc 2` (torchrun, gloo, two CPU processes)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iltk.cli import main as cli_main
from iltk.collect import collect_demos
from iltk.distributed import strip_nproc
from iltk.policies import load_policy


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "reach.hdf5"
    collect_demos("iltk/Reach-v0", path, 4, progress=False)
    return path


def _train_rows(out: Path) -> list[dict]:
    return [r for r in csv.DictReader((out / "metrics.csv").open()) if r["kind"] == "train"]


def test_two_processes_train_one_model_and_write_it_once(demos, tmp_path, capfd):
    out = tmp_path / "run"
    args = ["train", "--nproc", "2", "--dataset", str(demos), "--out", str(out)]
    args += ["--steps", "300", "--batch-size", "64", "--log-every", "50", "--eval-every", "150"]
    args += ["--eval-episodes", "2", "--no-progress"]
    assert cli_main(args) == 0
    said = capfd.readouterr().out  # the ranks' own output (subprocesses)
    assert said.count("trained bc for 300 steps") == 1  # rank 0 alone reports
    res = json.loads((out / "results.json").read_text())
    assert res["processes"] == 2 and res["steps"] == 300
    a, b = res["rank_checksums"]
    assert a == b  # the same weights on both ranks after training
    rows = _train_rows(out)
    assert [int(r["step"]) for r in rows] == list(range(50, 301, 50))  # each step once
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    evals = [r for r in csv.DictReader((out / "metrics.csv").open()) if r["kind"] == "eval"]
    assert [int(r["step"]) for r in evals] == [150, 300]
    policy = load_policy(out / "last")
    total = sum(float(p.detach().double().sum()) for p in policy.parameters())
    assert abs(total - a) < 1e-6 * abs(a)
    # resumed with two processes: continues from step 300, the ranks still agree
    args = ["train", "--nproc", "2", "--dataset", str(demos), "--out", str(out), "--resume"]
    args += ["--steps", "400", "--batch-size", "64", "--log-every", "50", "--eval-episodes", "0"]
    args += ["--no-progress"]
    assert cli_main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 400 and res["rank_checksums"][0] == res["rank_checksums"][1]
    assert [int(r["step"]) for r in _train_rows(out)][-2:] == [350, 400]


def _rank_pids(marker: str, rank: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            env = (entry / "environ").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if marker in cmd and f"RANK={rank}" in env and "torch.distributed.run" not in cmd:
            pids.append(int(entry.name))
    return pids


def test_a_killed_rank_ends_the_job_with_an_error_instead_of_a_hang(demos, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "iltk", "train", "--nproc", "2", "--dataset", str(demos)]
    cmd += ["--out", str(out), "--steps", "1000000", "--log-every", "20", "--eval-every", "0"]
    cmd += ["--eval-episodes", "0", "--no-progress", "--batch-size", "64"]
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        victims: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = out / "metrics.csv"
            if metrics.exists() and len(metrics.read_text().splitlines()) > 2:
                victims = _rank_pids(str(out), 1)
                if victims:
                    break
            time.sleep(0.2)
        assert victims, "the two-process run did not get going"
        os.kill(victims[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)  # ends: no rank waits forever
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "the 2-process run failed" in err and "--resume" in err


def test_ctrl_c_stops_every_rank(demos, tmp_path):
    """SIGINT to the terminal's process group (what Ctrl-C sends): the launcher, torchrun
    and both ranks end, with status 130."""
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "iltk", "train", "--nproc", "2", "--dataset", str(demos)]
    cmd += ["--out", str(out), "--steps", "1000000", "--log-every", "20", "--eval-every", "0"]
    cmd += ["--eval-episodes", "0", "--no-progress", "--batch-size", "64"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MUJOCO_GL": "egl"},
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = out / "metrics.csv"
            if metrics.exists() and len(metrics.read_text().splitlines()) > 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the two-process run did not get going"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "interrupted" in err
    assert not _rank_pids(str(out), 0) and not _rank_pids(str(out), 1)


def test_launch_arguments_and_settings():
    assert strip_nproc(["train", "--nproc", "2", "--steps", "5"]) == ["train", "--steps", "5"]
    assert strip_nproc(["train", "--nproc=4", "--out", "x"]) == ["train", "--out", "x"]
    from iltk.algos.settings import TrainConfig

    with pytest.raises(ValueError, match="must divide by nproc 3"):
        TrainConfig(nproc=3, batch_size=256)
    with pytest.raises(ValueError, match="nproc must be >= 1"):
        TrainConfig(nproc=0)
