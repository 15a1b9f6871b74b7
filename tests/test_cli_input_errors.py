"""Bad numbers and paths get one clear line, before any work (issue 14: each of these was
silently accepted, ran forever, or ended in a traceback)."""

import subprocess
import sys

import pytest

from iltk.cli import main as cli_main


@pytest.fixture
def reach(reach_demos):
    return reach_demos


@pytest.fixture
def checkpoint(reach_bc):
    return reach_bc


def _fails(argv, capsys, message):
    """The command exits 2 with ``message`` on stderr and no traceback (tyro or ours)."""
    try:
        rc = cli_main(argv)
    except SystemExit as err:  # tyro rejects a flag it cannot parse this way
        rc = err.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["collect", "--dart-noise", "-1"], "--dart-noise must be a noise std in [0, 10]"),
        (["collect", "--dart-noise", "nan"], "--dart-noise must be a noise std in [0, 10]"),
        (["collect", "--num-envs", "0"], "--num-envs must be at least 1"),
        (["dart", "--scale", "nan"], "scale must be a finite number > 0, got nan"),
        (["dart", "--init-noise", "-0.1"], "init_noise must be a finite number >= 0"),
        (["train", "--bc.hidden", "0"], "hidden layer sizes must be >= 1, got [0]"),
        (["train", "--bc.dropout", "1.5"], "dropout must be in [0, 1)"),
        (["train", "--lr", "nan"], "lr must be in (0, 1], got nan"),
        (["train", "--eval-envs", "0"], "eval_envs must be >= 1"),
        (["train", "--act.d-model", "0"], "d_model must be >= 1"),
        (["train", "--resume", "--overwrite"], "resume and overwrite exclude each other"),
        (
            ["ppo", "--ppo.batch-size", "100000", "--ppo.n-steps", "256"],
            "batch_size 100000 is larger than a rollout (256 steps x 1 envs = 256)",
        ),
        (["ppo", "--device", "tpu"], "--device tpu: unknown; use auto, cpu, cuda"),
    ],
)
def test_absurd_settings_are_refused(argv, message, capsys, tmp_path):
    _fails(argv + ["--out", str(tmp_path / "out")], capsys, message)
    assert not (tmp_path / "out").exists()


def test_eval_and_replay_numbers(checkpoint, reach, capsys, tmp_path):
    _fails(
        ["eval", "--policy", str(checkpoint), "--episodes", "0"],
        capsys,
        "--episodes must be at least 1",
    )
    _fails(
        ["eval", "--policy", str(checkpoint), "--num-envs", "0"],
        capsys,
        "--num-envs must be at least 1",
    )
    _fails(
        ["replay", str(reach), "--episode", "99"],
        capsys,
        "has 4 episodes, numbered 0 to 3; --episode 99 does not exist",
    )
    _fails(
        ["replay", str(reach), "--render-size", "0", "0", "--video", str(tmp_path / "v.mp4")],
        capsys,
        "--render-size must be between 16 and 4096 pixels each, got 0 0",
    )
    assert not (tmp_path / "v.mp4").exists()
    _fails(["dataset", "verify", str(reach), "--episodes", "-1"], capsys, "--episodes must be >= 0")
    _fails(  # a step policy has no chunks to execute differently
        ["eval", "--policy", str(checkpoint), "--chunk.n-action-steps", "1"],
        capsys,
        "--chunk.*: n_action_steps, temporal_ensemble: the policy (bc) predicts no action chunks",
    )


def test_read_only_output_is_refused_before_any_work(reach, capsys, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                             capture_output=True)  # fmt: skip
        mounted = res.returncode == 0
    except OSError:
        mounted = False
    if not mounted:  # no mount here: a location that refuses writes, by injection
        import pathlib

        real = pathlib.Path.write_bytes

        def refuse(self, data):
            if str(self).startswith(str(ro)):
                raise OSError(30, "Read-only file system", str(self))
            return real(self, data)

        monkeypatch.setattr(pathlib.Path, "write_bytes", refuse)
    try:
        for argv in (
            ["collect", "--task", "iltk/Reach-v0", "--out", str(ro / "d.hdf5")],
            ["dataset", "merge", str(ro / "m.hdf5"), str(reach)],
            ["dataset", "filter", str(reach), str(ro / "f.hdf5")],
            ["train", "--dataset", str(reach), "--out", str(ro / "run")],
            ["dagger", "--task", "iltk/Reach-v0", "--out", str(ro / "dagger")],
            ["dart", "--task", "iltk/Reach-v0", "--out", str(ro / "dart")],
        ):
            _fails(argv, capsys, "cannot write: the location is read-only")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_unknown_filter_source_is_named(reach, capsys, tmp_path):
    _fails(
        ["dataset", "filter", str(reach), str(tmp_path / "o.hdf5"), "--source", "humn"],
        capsys,
        "--source humn: unknown; sources are human, scripted",
    )


def test_python_dash_m_iltk_cli_runs(reach):
    res = subprocess.run(
        [sys.executable, "-m", "iltk.cli", "dataset", "info", str(reach)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and "episodes    4" in res.stdout


def test_a_window_nobody_can_see_is_refused_at_once(checkpoint, reach, capsys, monkeypatch):
    """Under SDL's dummy driver (what the Makefile's tests set) a window is invisible and
    takes no keys: replay, watch, record and correct say so instead of running forever."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    for argv in (
        ["replay", str(reach), "--episode", "1"],
        ["replay", "--policy", str(checkpoint)],
        ["record", "--task", "iltk/Reach-v0", "--out", str(reach.parent / "r.hdf5")],
        ["correct", "--policy", str(checkpoint), "--out", str(reach.parent / "c.hdf5")],
    ):
        _fails(argv, capsys, "SDL_VIDEODRIVER=dummy")
    assert not (reach.parent / "r.hdf5").exists() and not (reach.parent / "c.hdf5").exists()


def test_a_file_output_typed_as_a_folder_is_refused(checkpoint, capsys, tmp_path):
    # `--out newdir/` used to write a file called newdir
    new = tmp_path / "newdir"
    _fails(
        ["collect", "--episodes", "1", "--out", f"{new}/"],
        capsys,
        f"--out {new}/: names a folder; --out takes a file name (e.g. {new}/demos.hdf5)",
    )
    _fails(["collect", "--episodes", "1", f"--out={tmp_path}"], capsys, "is a folder")
    _fails(["eval", "--policy", str(checkpoint), "--json", f"{new}/"], capsys, "names a folder")
    assert not new.exists()
