"""Faults on the data side: two writers, full disks, overwrites, appends under other settings.

Each test here failed on the code before the hardening (issue 14): a second writer broke
the file, a full disk crashed the collector, merge/filter replaced files silently, and an
append under another init_spread made older episodes unreplayable.
"""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from iltk.cli import main as cli_main
from iltk.collect import collect_demos
from iltk.data import DatasetError, DemoFile, DemoWriter, make_env_args
from iltk.files import LockedError, WriterLock, recover_dir, write_dir_atomically

sys.path.insert(0, str(Path(__file__).parent))
from recorder_child import synthetic_episode  # noqa: E402

pytestmark = pytest.mark.expensive

CHILD = Path(__file__).parent / "recorder_child.py"
ILTK = [sys.executable, "-m", "iltk.cli"]


def _start_recorder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), "0", "1"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "READY"  # the writer (and its lock) is open
    return proc


def _saved_lines(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        if line.startswith("SAVED "):
            _, name, seed = line.split()
            out[name] = int(seed)
    return out


# ------------------------------------------------------------------ one writer
def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    path = tmp_path / "demos.hdf5"
    proc = _start_recorder(path)
    try:
        first = proc.stdout.readline()
        assert first.startswith("SAVED ")
        res = subprocess.run(
            [*ILTK, "collect", "--task", "iltk/Reach-v0", "--episodes", "2", "--out", str(path)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 2
        assert f"another iltk process (pid {proc.pid}) is writing this file" in res.stderr
        assert "Traceback" not in res.stderr
        with pytest.raises(LockedError, match=f"pid {proc.pid}"):
            DemoWriter(path, make_env_args("Synthetic-v0"))
    finally:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    saved = _saved_lines(first + out)
    # SIGKILL leaves no stale lock: the next writer opens at once and keeps every episode
    with DemoWriter(path, make_env_args("Synthetic-v0")):
        pass
    with DemoFile(path) as f:
        assert set(saved) <= set(f.demos)
        for name, seed in saved.items():
            np.testing.assert_array_equal(
                f.read(name, "actions"), synthetic_episode(seed)["actions"]
            )


def test_two_collectors_into_one_file_lose_nothing(tmp_path):
    path = tmp_path / "push.hdf5"
    collect_demos("iltk/Reach-v0", path, 3, progress=False)
    cmd = [*ILTK, "collect", "--task", "iltk/Reach-v0", "--episodes", "30", "--out", str(path)]
    procs = [
        subprocess.Popen(
            cmd + ["--seed", str(1000 * (i + 1))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    reported = 0
    for proc, out, err in results:
        assert "Traceback" not in err
        if proc.returncode == 0:
            reported += int(out.split("saved ")[1].split()[0])
        else:
            assert proc.returncode == 2 and "another iltk process (pid" in err
    with DemoFile(path) as f:  # opens and validates fully
        assert len(f.demos) == 3 + reported
        assert len({int(f.demo_attrs(d)["seed"]) for d in f.demos}) == len(f.demos)


def test_lock_file_removed_by_its_holder_is_not_shared(tmp_path):
    path = tmp_path / "x.hdf5"
    a = WriterLock(path).acquire()
    with pytest.raises(LockedError):
        WriterLock(path).acquire()
    a.release()
    assert not a.lock_path.exists()
    b = WriterLock(path).acquire()
    with pytest.raises(LockedError):
        WriterLock(path).acquire()
    b.release()


# ------------------------------------------------------------------ full disk
def _fail_after(monkeypatch, module, name, calls: int):
    """Make ``module.name`` raise OSError(ENOSPC) from its ``calls``-th call on."""
    real = getattr(module, name)
    count = {"n": 0}

    def failing(*args, **kwargs):
        count["n"] += 1
        if count["n"] >= calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


@pytest.fixture
def small_disk(tmp_path):
    """A 600 kB tmpfs where this process may mount one, else None (tests inject ENOSPC)."""
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    try:
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], capture_output=True
        )
        mounted = res.returncode == 0
    except OSError:  # no mount command
        mounted = False
    if not mounted:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_during_collect_keeps_saved_episodes(tmp_path, small_disk, monkeypatch, capsys):
    if small_disk is not None:
        out = small_disk / "push.hdf5"  # a real full disk: 600 kB hold about 11 Push episodes
    else:
        import iltk.data.writer as writer_module

        out = tmp_path / "push.hdf5"
        _fail_after(monkeypatch, writer_module, "write_bytes", 13)  # shard+index per save
    rc = cli_main(
        [
            "collect",
            "--task",
            "iltk/Push-v0",
            "--episodes",
            "60",
            "--out",
            str(out),
            "--num-envs",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "the disk is full" in err
    assert "Traceback" not in err
    with DemoFile(out) as f:  # every reported episode opens and validates
        saved = len(f.demos)
        assert 3 <= saved < 60
        for d in f.demos:
            assert f.read(d, "actions").shape[0] == f.num_samples(d)
    shards = out.with_name(out.name + ".episodes")
    leftovers = [p.name for p in shards.iterdir() if ".tmp" in p.name]
    assert leftovers == [], "a failed save left temporary shards"
    assert f"all {saved} episodes in push.hdf5 are safe ({saved} of them saved by this run)" in err


def test_full_disk_while_consolidating_keeps_the_index(tmp_path, monkeypatch):
    path = tmp_path / "d.hdf5"
    w = DemoWriter(path, make_env_args("Synthetic-v0"), background=False)
    for seed in range(3):
        w.save(synthetic_episode(seed), seed=seed)
    import iltk.data.writer as writer_module

    def no_space(folder, nbytes):
        raise OSError(errno.ENOSPC, "not enough free space (test)", str(folder))

    monkeypatch.setattr(writer_module, "ensure_free_space", no_space)
    with pytest.raises(DatasetError, match="all 3 episodes are safe .* .iltk dataset consolidate"):
        w.close()
    with DemoFile(path) as f:
        assert f.demos == ["demo_0", "demo_1", "demo_2"]
    WriterLock(path).acquire().release()  # LockedError if the failed close kept its lock


def test_a_damaged_shard_is_named_and_the_good_episodes_kept(tmp_path, capsys):
    path = tmp_path / "c1.hdf5"
    w = DemoWriter(path, make_env_args("Synthetic-v0"), background=False)
    for seed in range(4):
        w.save(synthetic_episode(seed), seed=seed)
    w.set_masks({"train": ["demo_0", "demo_1", "demo_2"], "valid": ["demo_3"]})
    w.close(consolidate=False)  # as a killed recording leaves it
    shard = tmp_path / "c1.hdf5.episodes" / "demo_1.hdf5"
    good = {}
    with DemoFile(path) as f:
        for name in ("demo_0", "demo_2", "demo_3"):
            good[name] = f.group(name)["actions"][()]
    damaged = shard.read_bytes()[:300]
    shard.write_bytes(damaged)
    # the damaged shard is named (it used to blame the folder, which was next to the file)
    assert cli_main(["dataset", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"demo_1: its shard {shard} is damaged" in err and "--skip-damaged" in err, err
    assert cli_main(["dataset", "consolidate", str(path)]) == 2
    assert "--skip-damaged" in capsys.readouterr().err
    # a renamed copy is told where its episodes are read from
    copy = tmp_path / "elsewhere" / "renamed.hdf5"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert cli_main(["dataset", "info", str(copy)]) == 2
    assert "renamed or copied from 'c1.hdf5'" in capsys.readouterr().err
    # the way out keeps every good episode and sets the damaged shard aside
    assert cli_main(["dataset", "consolidate", str(path), "--skip-damaged"]) == 0
    assert "without 1 damaged episode (demo_1)" in capsys.readouterr().out
    assert (tmp_path / "c1.hdf5.damaged" / "demo_1.hdf5").read_bytes() == damaged
    assert not (tmp_path / "c1.hdf5.episodes").exists()
    with DemoFile(path) as f:
        assert f.demos == ["demo_0", "demo_2", "demo_3"]
        assert f.masks == {"train": ["demo_0", "demo_2"], "valid": ["demo_3"]}
        for name, actions in good.items():
            np.testing.assert_array_equal(f.group(name)["actions"][()], actions)


# --------------------------------------------------------------- overwrites
@pytest.fixture
def two_files(tmp_path):
    a, b = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    collect_demos("iltk/Reach-v0", a, 3, progress=False)
    collect_demos("iltk/Reach-v0", b, 2, seed=100, progress=False)
    return a, b


def test_merge_and_filter_never_replace_without_asking(two_files, tmp_path, capsys):
    a, b = two_files
    other = tmp_path / "other.hdf5"
    collect_demos("iltk/Push-v0", other, 1, progress=False)
    before = other.read_bytes()
    assert cli_main(["dataset", "merge", str(other), str(a), str(b)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert cli_main(["dataset", "filter", str(a), str(other)]) == 2
    assert other.read_bytes() == before
    # an output that is an input: refused even with --overwrite
    for argv in (
        ["dataset", "filter", str(a), str(a), "--success-only", "--overwrite"],
        ["dataset", "merge", str(a), str(a), str(b), "--overwrite"],
    ):
        assert cli_main(argv) == 2
        assert "is also an input" in capsys.readouterr().err
    with DemoFile(a) as f:
        assert len(f.demos) == 3
    # the same input twice would duplicate its episodes
    assert cli_main(["dataset", "merge", str(tmp_path / "m.hdf5"), str(a), str(a)]) == 2
    assert "is given twice" in capsys.readouterr().err
    assert not (tmp_path / "m.hdf5").exists()
    # --overwrite replaces an output that is not an input
    assert cli_main(["dataset", "merge", str(tmp_path / "ab.hdf5"), str(a), str(b)]) == 0
    assert cli_main(["dataset", "filter", str(a), str(tmp_path / "ab.hdf5"), "--overwrite"]) == 0
    with DemoFile(tmp_path / "ab.hdf5") as f:
        assert len(f.demos) == 3


def test_append_under_other_settings_is_refused(tmp_path, capsys):
    path = tmp_path / "reach.hdf5"
    collect_demos("iltk/Reach-v0", path, 2, progress=False)
    for extra in (["--init-spread", "0.5"], ["--obs-mode", "state+pixels"]):
        argv = ["collect", "--task", "iltk/Reach-v0", "--episodes", "1", "--out", str(path)]
        assert cli_main(argv + extra) == 2
        err = capsys.readouterr().err
        assert "holds episodes recorded with other settings" in err
    # the same settings spelled the way a recording session spells them append fine
    kwargs = {"control_freq": 20.0, "terminate_on_success": False}
    w = DemoWriter(path, make_env_args("iltk/Reach-v0", kwargs, 20.0))
    w.close()
    assert cli_main(["dataset", "verify", str(path)]) == 0
    assert "2/2 episodes re-simulate exactly" in capsys.readouterr().out
    # merging files made under different settings is refused too
    narrow = tmp_path / "narrow.hdf5"
    collect_demos("iltk/Reach-v0", narrow, 1, env_kwargs={"init_spread": 0.5}, progress=False)
    assert cli_main(["dataset", "merge", str(tmp_path / "m.hdf5"), str(path), str(narrow)]) == 2
    assert "init_spread=1.0 in reach.hdf5, 0.5 in this file" in capsys.readouterr().err


# ---------------------------------------------------------- atomic folders
def test_checkpoint_folder_is_old_or_new_never_a_mix(tmp_path):
    dst = tmp_path / "last"
    write_dir_atomically(dst, lambda d: [(d / n).write_text("old") for n in ("a", "b")])

    def half_written(d):
        (d / "a").write_text("new")
        raise KeyboardInterrupt  # killed between the two files

    with pytest.raises(KeyboardInterrupt):
        write_dir_atomically(dst, half_written)
    assert {p.name: p.read_text() for p in dst.iterdir()} == {"a": "old", "b": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"], "temporary folder left"
    write_dir_atomically(dst, lambda d: [(d / n).write_text("new") for n in ("a", "b")])
    assert {p.name: p.read_text() for p in dst.iterdir()} == {"a": "new", "b": "new"}
    # a kill between the two renames of the portable fallback is repaired on the next use
    os.rename(dst, tmp_path / ".last.old")
    recover_dir(dst)
    assert {p.name: p.read_text() for p in dst.iterdir()} == {"a": "new", "b": "new"}


# ---------------------------------------------------------------- bad files
def test_split_of_a_truncated_file_names_it(tmp_path, two_files, capsys):
    a, _ = two_files
    data = a.read_bytes()
    bad = tmp_path / "truncated.hdf5"
    bad.write_bytes(data[: len(data) // 2])
    assert cli_main(["dataset", "split", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err


def test_groups_not_named_demo_n_are_noted(tmp_path, two_files, capsys):
    a, _ = two_files
    with h5py.File(a, "a") as f:
        f.copy(f["data/demo_0"], f["data"], name="episode_x")
    assert cli_main(["dataset", "info", str(a)]) == 0
    err = capsys.readouterr().err
    assert "ignoring 'episode_x'" in err and "demo_<N>" in err


def test_missing_mask_demos_and_bad_data_are_refused_at_train(tmp_path, two_files, capsys):
    a, b = two_files
    run = ["train", "--steps", "2", "--eval-episodes", "0", "--no-progress"]
    with h5py.File(a, "a") as f:
        f.create_dataset("mask/train", data=np.array([b"demo_0", b"demo_7", b"demo_9"]))
    assert cli_main(run + ["--dataset", str(a), "--out", str(tmp_path / "r1")]) == 2
    assert "mask/train names 2 demos the file does not hold (demo_7, demo_9)" in (
        capsys.readouterr().err
    )
    # absurd labels
    with h5py.File(b, "a") as f:
        f["data/demo_1/actions"][3, 0] = 1e30
    assert cli_main(run + ["--dataset", str(b), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "demo_1: key 'actions'" in err and "absurd values" in err


def test_empty_episodes_and_mismatched_widths(tmp_path, two_files, capsys):
    a, b = two_files
    with h5py.File(a, "a") as f:  # a zero-length episode
        g = f["data"].create_group("demo_3")
        for key, ds in f["data/demo_0"].items():
            if isinstance(ds, h5py.Dataset):
                g.create_dataset(key, data=ds[:0])
        g.create_dataset("obs/state", data=f["data/demo_0/obs/state"][:0])
        for k, v in f["data/demo_0"].attrs.items():
            g.attrs[k] = v
        g.attrs["num_samples"] = 0
    run = ["train", "--steps", "2", "--eval-episodes", "0", "--no-progress"]
    assert cli_main(run + ["--dataset", str(a), "--out", str(tmp_path / "r1")]) == 2
    assert "demo_3: key 'actions': has no steps" in capsys.readouterr().err
    assert cli_main(["dataset", "verify", str(a)]) == 2
    assert "demo_3: has no steps to re-simulate" in capsys.readouterr().err
    with h5py.File(b, "a") as f:  # one episode with a wider observation
        obs = f["data/demo_1/obs/state"][()]
        del f["data/demo_1/obs/state"]
        f.create_dataset("data/demo_1/obs/state", data=np.c_[obs, obs[:, :2]])
    assert (
        cli_main(run + ["--dataset", str(b), "--out", str(tmp_path / "r2"), "--task", "none"]) == 2
    )
    assert "demo_1: key 'obs/state': has per-step shape" in capsys.readouterr().err
    assert cli_main(["dataset", "verify", str(b)]) == 2
    assert "demo_1: key 'obs/state': has per-step shape" in capsys.readouterr().err


def test_info_into_a_closed_pipe_is_quiet(two_files):
    a, _ = two_files
    # `true` exits without reading: every write of iltk meets a closed pipe, as after `head`
    res = subprocess.run(
        f"{sys.executable} -m iltk.cli dataset info {a} | true; "
        f"{sys.executable} -m iltk.cli dataset info {a} --json | true",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert res.stderr == ""


def test_labels_outside_the_action_space_are_refused_at_train(tmp_path, two_files, capsys):
    a, _ = two_files
    with h5py.File(a, "a") as f:
        f["data/demo_2/actions"][5, 1] = 3.0  # Reach's actions lie in [-1, 1]
    argv = ["train", "--dataset", str(a), "--out", str(tmp_path / "r"), "--steps", "2"]
    assert cli_main(argv + ["--eval-episodes", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "demo_2: key 'actions': labels lie outside the action space of iltk/Reach-v0" in err
    assert "at step 5" in err


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_a_killed_collection_leaves_no_worker_traceback(tmp_path, how):
    """`collect --num-envs 2` steps its envs in subprocesses: killed or interrupted, the
    only words are the parent's (gymnasium's workers printed EOFError / BrokenPipeError
    tracebacks of their own), and the episodes saved so far are a valid file."""
    import contextlib
    import time

    out = tmp_path / "c.hdf5"
    proc = subprocess.Popen(
        [*ILTK, "collect", "--task", "iltk/Reach-v0", "--episodes", "2000", "--num-envs", "2"]
        + ["--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C reaches a terminal's whole process group
    )
    shards = out.with_name(out.name + ".episodes")
    deadline = time.monotonic() + 120
    while not (shards.is_dir() and len(list(shards.glob("demo_*.hdf5"))) >= 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"collect did not save 2 episodes: {proc.communicate()}")
        time.sleep(0.05)
    if how == "Ctrl-C":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, getattr(signal, how))
    try:
        _, err = proc.communicate(timeout=120)  # waits for the workers too (they hold stderr)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # leave no process behind, then fail
        proc.communicate()
        raise
    assert proc.returncode == {"SIGKILL": -9, "SIGTERM": 143, "Ctrl-C": 130}[how], err
    assert "Traceback" not in err and "Error" not in err, err
    with DemoFile(out) as f:  # the index renamed last: at least the first save is in it
        assert len(f.demos) >= 1
        for name in f.demos:
            assert len(f.read(name, "actions")) > 0
