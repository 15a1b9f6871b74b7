"""Killing the recorder at any moment never loses a saved episode nor breaks the file."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from iltk.data import DemoFile, DemoWriter, make_env_args

sys.path.insert(0, str(Path(__file__).parent))
from recorder_child import synthetic_episode  # noqa: E402

CHILD = Path(__file__).parent / "recorder_child.py"


def _assert_saved_intact(path, saved):
    with DemoFile(path) as f:  # opens and validates fully
        for name, seed in saved.items():
            assert name in f.demos, f"{name} was reported saved but is missing"
            expected = synthetic_episode(seed)
            ep = f.episode(name)
            np.testing.assert_array_equal(ep["actions"], expected["actions"])
            np.testing.assert_array_equal(ep["obs"]["state"], expected["obs"]["state"])
            np.testing.assert_array_equal(ep["obs"]["pixels"], expected["obs"]["pixels"])
            np.testing.assert_array_equal(ep["states"], expected["states"])
            np.testing.assert_array_equal(ep["intervention"], expected["fields"]["intervention"])
            assert int(f.demo_attrs(name)["seed"]) == seed


def _run_child(path, first_seed, background, kill_after_saves, sig, delay=0.0):
    """Start a recorder, wait until it has reported ``kill_after_saves`` saves (then
    ``delay`` seconds), send ``sig``; returns {demo: seed} of every save it reported."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(first_seed), "1" if background else "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [proc.stdout.readline()]  # READY: imports done, writer open
    while sum(line.startswith("SAVED ") for line in lines) < kill_after_saves:
        lines.append(proc.stdout.readline())
    time.sleep(delay)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    saved = {}
    for line in lines + out.splitlines():
        if line.startswith("SAVED "):
            _, name, seed = line.split()
            saved[name] = int(seed)
    return saved


@pytest.mark.parametrize("background", [True, False])
def test_sigkill_at_random_moments(tmp_path, background):
    path = tmp_path / "demos.hdf5"
    rng = np.random.default_rng(0 if background else 1)
    all_saved: dict[str, int] = {}
    seed = 0
    for _ in range(10):
        # kills land anywhere in the save loop (right after a reported save, or a random
        # moment of the next one), including the adoption of the file the previous (killed)
        # child left behind
        k = int(rng.integers(0, 4))
        saved = _run_child(path, seed, background, k, signal.SIGKILL, float(rng.uniform(0, 0.05)))
        assert len(saved) >= k
        assert not set(saved) & set(all_saved), "demo numbering was reused after a crash"
        all_saved.update(saved)
        seed += 10_000
        if path.exists():
            _assert_saved_intact(path, all_saved)
    # a later session folds the shards of the crashed ones into one file
    DemoWriter(path, make_env_args("Synthetic-v0")).close()
    assert not path.with_name(path.name + ".episodes").exists()
    _assert_saved_intact(path, all_saved)


def test_sigint_keeps_saved_episodes(tmp_path):
    path = tmp_path / "demos.hdf5"
    saved = _run_child(path, 0, True, 3, signal.SIGINT)
    assert len(saved) >= 3
    _assert_saved_intact(path, saved)
    assert not path.with_name(path.name + ".episodes").exists(), "close() did not consolidate"
