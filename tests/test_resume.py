"""--resume checks what it resumes: settings that cannot change are refused in one line,
the ones that may are taken and said, a finished run says so; nothing is written."""

import json

import pytest

from iltk.cli import main as cli_main
from iltk.collect import collect_demos


@pytest.fixture(scope="module")
def reach(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    for name, seed in (("a", 0), ("b", 50)):
        collect_demos("iltk/Reach-v0", root / f"{name}.hdf5", 2, seed=seed, progress=False)
    return root


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_train_resume_refuses_other_settings_and_says_what_changed(reach, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--dataset", str(reach / "a.hdf5"), "--out", str(out), "--no-progress"]
    base += ["--eval-episodes", "0", "--bc.hidden", "16", "16"]
    assert cli_main([*base, "--steps", "20"]) == 0
    config = (out / "config.json").read_text()
    rows = (out / "metrics.csv").read_text()
    capsys.readouterr()
    for change, named in [
        (["--algo", "bc-rnn"], "--algo bc -> bc-rnn"),
        (["--dataset", str(reach / "b.hdf5")], "--dataset"),
        (["--batch-size", "64"], "--batch-size 256 -> 64"),
        (["--bc.hidden", "32"], "--bc.hidden [16, 16] -> [32]"),
    ]:
        argv = [*base, "--steps", "40", "--resume", *change]
        if change[0] == "--dataset":
            argv = [a if a != str(reach / "a.hdf5") else str(reach / "b.hdf5") for a in argv]
        assert cli_main(argv) == 2, change
        line = _one_line(capsys)
        assert "--resume with other settings" in line and named in line, line
        assert (out / "config.json").read_text() == config  # nothing rewritten
        assert (out / "metrics.csv").read_text() == rows
    # what may change is taken, and said
    assert cli_main([*base, "--steps", "40", "--eval-every", "10", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming with --steps 20 -> 40; --eval-every 1000 -> 10" in err
    assert json.loads((out / "config.json").read_text())["steps"] == 40
    # a finished run says so and does nothing (no duplicate rows)
    rows = (out / "metrics.csv").read_text()
    assert cli_main([*base, "--steps", "40", "--eval-every", "10", "--resume"]) == 2
    assert "the run is finished (40 of --steps 40)" in _one_line(capsys)
    assert (out / "metrics.csv").read_text() == rows
    # the run's own settings through --config resume it
    again = ["train", "--config", str(out / "config.json"), "--steps", "50", "--resume"]
    assert cli_main(again) == 0


def test_ppo_resume_refuses_another_network(tmp_path, capsys):
    out = tmp_path / "ppo"
    base = ["ppo", "--task", "Pendulum-v1", "--ppo.n-steps", "128", "--out", str(out)]
    base += ["--eval-episodes", "0", "--no-progress"]
    assert cli_main([*base, "--total-timesteps", "128"]) == 0
    capsys.readouterr()
    assert cli_main([*base, "--total-timesteps", "256", "--resume", "--hidden", "32"]) == 2
    assert "--hidden [64, 64] -> [32]" in _one_line(capsys)
    assert json.loads((out / "config.json").read_text())["hidden"] == [64, 64]
    assert cli_main([*base, "--total-timesteps", "256", "--resume", "--ppo.lr", "1e-3"]) == 2
    assert "--ppo.lr 0.0003 -> 0.001" in _one_line(capsys)
    assert cli_main([*base, "--total-timesteps", "128", "--resume"]) == 2
    assert "finished (128 of --total-timesteps 128)" in _one_line(capsys)
    assert cli_main([*base, "--total-timesteps", "256", "--resume"]) == 0
    # another task (other shapes) is refused by name, not by numpy's broadcast error
    capsys.readouterr()
    other = [a if a != "Pendulum-v1" else "MountainCarContinuous-v0" for a in base]
    assert cli_main([*other, "--total-timesteps", "512", "--resume"]) == 2
    assert "--task Pendulum-v1 -> MountainCarContinuous-v0" in _one_line(capsys)


def test_a_refused_start_leaves_nothing_behind(reach, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--dataset", str(reach / "a.hdf5"), "--out", str(out), "--no-progress"]
    base += ["--eval-episodes", "0", "--steps", "5"]
    assert cli_main([*base, "--batch-size", "100000"]) == 2
    line = _one_line(capsys)
    assert "--batch-size 100000 is larger than the" in line and "use at most 256" in line
    assert cli_main([*base, "--valid-fraction", "0.999"]) == 2
    assert "holds out all 2 demos" in _one_line(capsys)
    assert not out.exists()
    assert cli_main(base) == 0  # the corrected command is not refused as an earlier run
    capsys.readouterr()
    # fine-tuning a Reach policy on another task: refused by name, no folder left
    tuned = tmp_path / "tuned"
    argv = ["finetune", "--policy", str(out / "last"), "--task", "iltk/Push-v0"]
    assert cli_main([*argv, "--out", str(tuned), "--no-progress"]) == 2
    assert "trained on iltk/Reach-v0, not iltk/Push-v0" in _one_line(capsys)
    assert not tuned.exists()
    # the user's own empty folder stays, empty
    mine = tmp_path / "mine"
    mine.mkdir()
    assert cli_main([*base[:4], str(mine), *base[5:], "--batch-size", "100000"]) == 2
    assert mine.is_dir() and not any(mine.iterdir())
