"""`--config RUN/config.json`: a run's recorded settings start it again, flags on top."""

import dataclasses
import json

import pytest

from iltk.algos.settings import (
    FinetuneSettings,
    IRLConfig,
    PPOConfig,
    TrainConfig,
    config_from_dict,
)
from iltk.cli import COMMANDS
from iltk.cli import main as cli_main


def test_a_ppo_run_starts_again_from_its_config_with_flags_on_top(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    args = ["ppo", "--task", "Pendulum-v1", "--total-timesteps", "256", "--ppo.n-steps", "128"]
    args += ["--ppo.clip-range", "0.1", "--hidden", "16", "--eval-episodes", "0", "--no-progress"]
    assert cli_main([*args, "--out", str(first)]) == 0
    saved = json.loads((first / "config.json").read_text())
    assert saved["ppo"]["clip_range"] == 0.1 and saved["hidden"] == [16]
    again = ["ppo", "--config", str(first / "config.json"), "--out", str(second)]
    assert cli_main([*again, "--ppo.n-epochs", "3"]) == 0
    redone = json.loads((second / "config.json").read_text())
    changed = {k for k in saved if saved[k] != redone[k]}
    assert changed == {"out", "ppo"}, changed
    assert {k for k in saved["ppo"] if saved["ppo"][k] != redone["ppo"][k]} == {"n_epochs"}
    # the folder given instead of the file, and --resume never taken from the file: the
    # same OUT is refused as an earlier run until --resume is given
    assert cli_main(["ppo", "--config", str(first), "--no-progress"]) == 2
    assert cli_main(["ppo", "--config", str(first), "--total-timesteps", "384", "--resume"]) == 0


def test_every_recording_commands_config_round_trips():
    for name, cfg in {
        "ppo": PPOConfig(task="Pendulum-v1"),
        "finetune": FinetuneSettings(mode="residual"),
        "irl": IRLConfig(task="iltk/Reach-v0"),
        "train": TrainConfig(algo="act", steps=7),
    }.items():
        data = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
        back = config_from_dict(COMMANDS[name], data)
        assert dataclasses.asdict(back) == dataclasses.asdict(cfg), name


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "no such file"),
        ("{not json", "not a JSON settings file"),
        ("[1, 2]", "holds no settings object"),
        ('{"algo": "bc", "grad_clip": 1.0}', "'algo', 'grad_clip' are not settings"),
        ('{"total_timesteps": "many"}', "total_timesteps = 'many', but it takes int"),
        ('{"ppo": {"objective": "ppg"}}', "objective = 'ppg', but it takes one of 'clip'"),
    ],
)
def test_a_bad_config_file_is_one_line(tmp_path, capsys, content, words):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    try:
        code = cli_main(["ppo", "--config", str(path), "--out", str(tmp_path / "o")])
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "o").exists()
