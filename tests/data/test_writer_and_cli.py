"""Writer round trips, appends, scripted collection with DART noise, and the dataset CLI."""

import json

import numpy as np
import pytest

from iltk.cli import main as cli_main
from iltk.collect import collect_demos
from iltk.data import DatasetError, DemoFile, DemoWriter, make_env_args
from iltk.envs import make_env, make_expert


def test_collect_roundtrip_append_and_verify(tmp_path, capsys):
    path = tmp_path / "push.hdf5"
    res = collect_demos("iltk/Push-v0", path, 4, num_envs=2, progress=False)
    assert res.saved == 4 and res.successes == 4
    collect_demos("iltk/Push-v0", path, 2, seed=50, progress=False)
    with DemoFile(path) as f:
        assert f.demos == [f"demo_{i}" for i in range(6)]
        assert f.env_name == "iltk/Push-v0" and f.attrs["format_version"] == 1
        attrs = f.demo_attrs("demo_5")
        assert attrs["source"] == "scripted" and attrs["success"] and attrs["seed"] == 51
        assert "<mujoco" in attrs["model_file"]
        assert f.external_links() == {}  # consolidated on close
        ep = f.episode("demo_0")
        assert ep["obs"]["state"].shape[0] == ep["actions"].shape[0] == ep["states"].shape[0]
        np.testing.assert_array_equal(ep["actions"], ep["actions_executed"])
    assert cli_main(["dataset", "verify", str(path)]) == 0
    assert "6/6 episodes re-simulate exactly" in capsys.readouterr().out


def test_dart_noise_labels_are_clean(tmp_path):
    path = tmp_path / "dart.hdf5"
    collect_demos("iltk/Reach-v0", path, 3, dart_noise=0.3, progress=False)
    env = make_env("iltk/Reach-v0")
    expert = make_expert(env)
    env.reset(seed=0)
    with DemoFile(path) as f:
        assert f.demo_attrs("demo_0")["source"] == "dart"
        ep = f.episode("demo_0")
    noise = ep["actions_executed"] - ep["actions"]
    assert np.abs(noise).mean() > 0.05
    # executed = label + noise, clipped to the action space
    np.testing.assert_allclose(
        ep["actions_executed"], np.clip(ep["actions"] + ep["noise"], -1, 1), atol=1e-6
    )
    for t in range(len(ep["actions"])):  # the label is the expert's action in the visited state
        env.unwrapped.set_state(ep["states"][t])
        np.testing.assert_allclose(expert(), ep["actions"][t], atol=1e-6)


def test_success_only_and_env_mismatch(tmp_path):
    path = tmp_path / "maze.hdf5"
    res = collect_demos(
        "iltk/PointMaze-v0", path, 3, success_only=True, dart_noise=0.9, progress=False
    )
    with DemoFile(path) as f:
        assert all(f.demo_attrs(d)["success"] for d in f.demos)
        assert len(f.demos) == res.saved
    with pytest.raises(DatasetError, match="cannot append episodes of 'iltk/Reach-v0'"):
        DemoWriter(path, make_env_args("iltk/Reach-v0"))


def test_dataset_cli(tmp_path, capsys):
    a, b = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    collect_demos("iltk/Reach-v0", a, 4, progress=False)
    collect_demos("iltk/Reach-v0", b, 2, dart_noise=0.2, seed=10, progress=False)
    merged = tmp_path / "m.hdf5"
    assert cli_main(["dataset", "merge", str(merged), str(a), str(b)]) == 0
    assert cli_main(["dataset", "split", str(merged), "--valid-fraction", "0.34"]) == 0
    capsys.readouterr()
    assert cli_main(["dataset", "info", str(merged), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 6 and info["sources"] == {"scripted": 4, "dart": 2}
    assert info["masks"] == {"train": 4, "valid": 2}
    assert info["keys"]["obs/state"] == {"shape": [9], "dtype": "float32"}
    out = tmp_path / "f.hdf5"
    assert cli_main(["dataset", "filter", str(merged), str(out), "--source", "dart"]) == 0
    with DemoFile(out) as f:
        assert len(f.demos) == 2
    other = tmp_path / "maze.hdf5"
    collect_demos("iltk/PointMaze-v0", other, 1, progress=False)
    assert cli_main(["dataset", "merge", str(tmp_path / "x.hdf5"), str(a), str(other)]) == 2
    assert "different envs" in capsys.readouterr().err


def test_keep_partial_on_quit(tmp_path):
    from iltk.controllers import ExpertController
    from iltk.envs import make_vector_env
    from iltk.rollout import run_episodes

    envs = make_vector_env("iltk/Push-v0", 1)
    path = tmp_path / "p.hdf5"
    with DemoWriter(path, make_env_args("iltk/Push-v0"), background=False) as w:
        eps = run_episodes(
            envs,
            ExpertController(),
            5,
            keep_partial=True,
            after_step=lambda ev: {0: "quit"} if ev.step == 7 else None,
            on_episode=lambda ep: w.save(ep),
        )
    assert len(eps) == 1 and eps[0].partial and eps[0].length == 7
    with DemoFile(path) as f:
        assert f.demo_attrs("demo_0")["partial"]


def test_collect_refuses_envs_without_expert_before_writing(tmp_path, capsys):
    out = tmp_path / "p.hdf5"
    assert cli_main(["collect", "--task", "Pendulum-v1", "--out", str(out), "--episodes", "2"]) == 2
    assert "no scripted expert" in capsys.readouterr().err
    assert not out.exists()


def test_collect_records_a_policys_episodes_on_a_task_without_an_expert(tmp_path, capsys):
    from iltk.evaluate import evaluate_policy
    from iltk.policies import load_policy

    run = tmp_path / "ppo"
    args = ["ppo", "--task", "Pendulum-v1", "--total-timesteps", "512", "--ppo.n-steps", "256"]
    assert cli_main([*args, "--out", str(run), "--eval-episodes", "0", "--no-progress"]) == 0
    out = tmp_path / "pend.hdf5"
    # no --task: the checkpoint's
    assert cli_main(["collect", "--policy", str(run / "last"), "--episodes", "2", "--out",
                     str(out), "--seed", "5"]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "saved 2 episodes" in said and "policy's mean return" in said
    with DemoFile(out) as f:
        assert f.env_name == "Pendulum-v1" and len(f.demos) == 2
        attrs = f.demo_attrs("demo_0")
        assert attrs["source"] == "policy" and attrs["seed"] == 5
        assert attrs["policy"] == str(run / "last")
        ret = sum(float(f.read(d, "rewards").sum()) for d in f.demos) / 2
    # the same episodes as an evaluation of the policy from the same seeds
    res = evaluate_policy(load_policy(run / "last"), "Pendulum-v1", 2, seed=5)
    assert ret == pytest.approx(res.mean_return, rel=1e-5)
    assert cli_main(["collect", "--policy", str(run / "last"), "--dart-noise", "0.1",
                     "--out", str(tmp_path / "x.hdf5")]) == 2  # fmt: skip
    assert "not with --policy" in capsys.readouterr().err


def test_collect_init_spread_is_recorded(tmp_path, capsys):
    out = tmp_path / "narrow.hdf5"
    args = ["collect", "--task", "iltk/Reach-v0", "--out", str(out), "--episodes", "3"]
    assert cli_main([*args, "--init-spread", "0"]) == 0
    with DemoFile(out) as f:
        assert f.env_args["env_kwargs"]["init_spread"] == 0.0
        starts = {f.episode(d)["states"][0].tobytes() for d in f.demos}
    assert len(starts) == 1  # one layout, whatever the seed
    foreign = ["collect", "--task", "Pendulum-v1", "--out", str(tmp_path / "p.hdf5")]
    assert cli_main([*foreign, "--init-spread", "0.5"]) == 2
    assert "iltk tasks only" in capsys.readouterr().err  # the MuJoCo ones


def test_dart_noise_is_the_same_whatever_the_number_of_envs(tmp_path):
    runs = {}
    for n in (1, 3):
        path = tmp_path / f"dart_{n}.hdf5"
        collect_demos("iltk/Reach-v0", path, 4, num_envs=n, dart_noise=0.3, seed=7, progress=False)
        with DemoFile(path) as f:
            runs[n] = {int(f.demo_attrs(d)["seed"]): f.read(d, "actions_executed") for d in f.demos}
    assert sorted(runs[1]) == sorted(runs[3]) == [7, 8, 9, 10]
    for seed in runs[1]:
        np.testing.assert_array_equal(runs[1][seed], runs[3][seed])


def test_progress_bars_in_a_log_are_a_few_lines(tmp_path):
    """stderr not a terminal (a log file, CI): the bar redraws every 30 s, not 10 times a
    second, so a collection's log holds its start and its end, not kilobytes of redraws."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TQDM_MININTERVAL"}
    argv = [sys.executable, "-m", "iltk.cli", "collect", "--task", "iltk/Reach-v0"]
    argv += ["--episodes", "60", "--out", str(tmp_path / "r.hdf5")]
    res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    bars = [line for line in res.stderr.replace("\r", "\n").splitlines() if "collect iltk" in line]
    assert 1 <= len(bars) <= 3, bars
    assert "60/60" in bars[-1]
