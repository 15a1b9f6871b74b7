"""DAgger, HG-DAgger and DART: controllers, schedules, covariance, and tiny whole runs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from iltk.algos.dagger import beta_at, run_dagger
from iltk.algos.dart import estimate_covariance, run_dart
from iltk.algos.settings import DaggerConfig, DartConfig, LearnerSettings
from iltk.cli import main as cli_main
from iltk.controllers import BetaMixture, ButtonTrigger, HGDaggerGate, TakeoverGate
from iltk.data import DemoFile
from iltk.data.dataset import DemoDataset
from iltk.envs import make_env, make_expert
from iltk.policies import PolicyRunner, load_policy
from iltk.rollout import ControlOutput


class Fixed:
    """A controller returning scripted actions, one row per call."""

    def __init__(self, actions):
        self.actions = [np.asarray(a, np.float32).reshape(1, -1) for a in actions]
        self.t = 0

    def reset(self, env_ids):
        pass

    def act(self, obs, info, envs):
        a = self.actions[min(self.t, len(self.actions) - 1)]
        self.t += 1
        return ControlOutput(executed=a, label=a)


def test_hg_dagger_gate_takes_over_and_hands_back():
    expert = Fixed([[0.0]] * 12)
    # policy: agrees, strays (0.5) for 3 steps, then agrees again
    policy = Fixed(
        [[0.0], [0.0], [0.5], [0.5], [0.5], [0.05], [0.05], [0.05], [0.0], [0.0], [0.0], [0.0]]
    )
    gate = HGDaggerGate(expert, policy, takeover=0.3, handback=0.1, hold=3)
    flags, executed = [], []
    for _ in range(12):
        out = gate.act(None, {}, None)
        flags.append(bool(out.fields["intervention"][0]))
        executed.append(float(out.executed[0, 0]))
    # takes over at step 2; calm from step 5; hands back once calm for 3 steps (step 7)
    assert flags == [False, False, True, True, True, True, True, False, False, False, False, False]
    assert all(e == 0.0 for e, f in zip(executed, flags) if f)  # the expert acted
    assert executed[1] == 0.0 and executed[8] == 0.0
    gate.reset(np.array([0]))
    assert not gate.in_control.any()


def test_takeover_gate_follows_the_button():
    """What `iltk correct --mode hg-dagger` composes: the person's button decides."""

    class Person:
        def __init__(self, held):
            self.held, self.t = held, 0

        def reset(self, env_ids):
            pass

        def act(self, obs, info, envs):
            a = np.array([[0.7]], np.float32)
            held = np.array([self.held[self.t]])
            self.t += 1
            return ControlOutput(executed=a, label=a, fields={"takeover": held, "late": [0.0]})

    held = [False, True, True, False]
    gate = TakeoverGate(Person(held), Fixed([[-0.2]] * 4), ButtonTrigger("takeover"))
    for h in held:
        out = gate.act(None, {}, None)
        assert bool(out.fields["intervention"][0]) == h and bool(gate.in_control[0]) == h
        assert out.executed[0, 0] == pytest.approx(0.7 if h else -0.2)
        assert out.label[0, 0] == pytest.approx(0.7 if h else -0.2)
        assert "takeover" not in out.fields and "late" in out.fields  # the button is consumed
    with pytest.raises(ValueError, match="takeover"):
        TakeoverGate(Fixed([[0.0]]), Fixed([[0.0]]), ButtonTrigger()).act(None, {}, None)


def test_beta_mixture_labels_with_the_expert():
    for beta, expected in ((1.0, 1.0), (0.0, -1.0)):
        mix = BetaMixture(Fixed([[1.0]] * 5), Fixed([[-1.0]] * 5), beta)
        out = mix.act(None, {}, None)
        assert out.executed[0, 0] == expected and out.label[0, 0] == 1.0
        assert out.fields["policy_actions"][0, 0] == -1.0


def test_beta_schedules():
    lin = DaggerConfig(beta_schedule="linear", rounds=4)
    exp = DaggerConfig(beta_schedule="exponential", beta=0.5)
    const = DaggerConfig(beta_schedule="constant", beta=0.3)
    assert [beta_at(lin, k) for k in (1, 2, 4)] == [0.75, 0.5, 0.0]
    assert [beta_at(exp, k) for k in (1, 2, 3)] == [0.5, 0.25, 0.125]
    assert beta_at(const, 7) == 0.3


def test_dart_covariance_estimate():
    rng = np.random.default_rng(0)
    true = np.array([[0.04, 0.01], [0.01, 0.09]])
    errors = rng.multivariate_normal(np.zeros(2), true, size=20000)
    np.testing.assert_allclose(estimate_covariance(errors), true, atol=0.005)
    np.testing.assert_allclose(estimate_covariance(errors, scale=2.0), 2 * true, atol=0.01)
    capped = estimate_covariance(errors, max_std=0.1)
    assert np.sqrt(np.diag(capped)).max() <= 0.1 + 1e-9


TINY = LearnerSettings(steps_per_round=60, batch_size=64)


def test_dagger_run_labels_every_state_with_the_expert(tmp_path):
    rows = run_dagger(
        DaggerConfig(
            task="iltk/Reach-v0",
            rounds=2,
            episodes_per_round=3,
            initial_demos=3,
            eval_episodes=2,
            out=tmp_path,
            learner=TINY,
            num_envs=1,
        ),
        progress=False,
    )
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[0]["beta"] == 1.0 and rows[1]["beta"] == 0.5
    assert rows[-1]["expert_labels"] == sum(r["steps"] for r in rows)
    assert (tmp_path / "success_vs_labels.png").exists() and (
        tmp_path / "policy" / "model.safetensors"
    ).exists()
    env = make_env("iltk/Reach-v0")
    expert = make_expert(env)
    env.reset(seed=0)
    with DemoFile(tmp_path / "data.hdf5") as f:
        sources = [f.demo_attrs(d)["source"] for d in f.demos]
        assert sources == ["scripted"] * 3 + ["dagger"] * 6
        ep = f.episode("demo_5")
    assert "policy_actions" in ep and "expert_acted" in ep
    for t in range(len(ep["actions"])):
        env.unwrapped.set_state(ep["states"][t])
        np.testing.assert_allclose(expert(), ep["actions"][t], atol=1e-6)
    acted = ep["expert_acted"].astype(bool)
    np.testing.assert_allclose(
        ep["actions_executed"][~acted], ep["policy_actions"][~acted], atol=1e-6
    )


def test_hg_dagger_run_aggregates_interventions(tmp_path):
    rows = run_dagger(
        DaggerConfig(
            task="iltk/Reach-v0",
            variant="hg-dagger",
            rounds=1,
            episodes_per_round=3,
            initial_demos=2,
            eval_episodes=2,
            out=tmp_path,
            learner=TINY,
            num_envs=1,
            takeover=0.05,
            handback=0.01,
        ),
        progress=False,
    )
    with DemoFile(tmp_path / "data.hdf5") as f:
        hg = [d for d in f.demos if f.demo_attrs(d)["source"] == "hg-dagger"]
        inter = np.concatenate([f.read(d, "intervention") for d in hg])
        scripted_steps = sum(f.num_samples(d) for d in f.demos if d not in hg)
    assert len(hg) == 3 and inter.any()
    assert rows[1]["expert_labels"] == scripted_steps + int(inter.sum())
    ds = DemoDataset(tmp_path / "data.hdf5", uncorrected_weight=0.0)
    assert len(ds.pool) == scripted_steps + int(inter.sum())
    # only labels are sampled: every drawn step carries weight (with uniform draws over all
    # steps most of an HG-DAgger batch had weight 0)
    idx = ds.sample_indices(4096, torch.Generator().manual_seed(0))
    assert bool((ds.weights[idx] > 0).all())
    assert len(torch.unique(idx)) > 0.9 * len(ds.pool)  # and all of them are drawn


def test_dart_run_injects_estimated_noise(tmp_path):
    rows = run_dart(
        DartConfig(
            task="iltk/Reach-v0",
            rounds=1,
            episodes_per_round=3,
            initial_demos=3,
            eval_episodes=2,
            out=tmp_path,
            learner=TINY,
            num_envs=1,
        ),
        progress=False,
    )
    assert rows[0]["noise_trace"] == 0.0 and rows[1]["noise_trace"] > 0.0
    with DemoFile(tmp_path / "data.hdf5") as f:
        ep = f.episode(f.demos[-1])
    assert np.abs(ep["actions_executed"] - ep["actions"]).mean() > 0.001  # noisy execution


def test_cli_dagger_and_dart_smoke(tmp_path, capsys):
    common = [
        "--task",
        "iltk/Reach-v0",
        "--rounds",
        "1",
        "--episodes-per-round",
        "2",
        "--initial-demos",
        "2",
        "--eval-episodes",
        "2",
        "--num-envs",
        "1",
        "--learner.steps-per-round",
        "20",
        "--learner.batch-size",
        "32",
    ]
    assert (
        cli_main(
            [
                "dagger",
                *common,
                "--out",
                str(tmp_path / "d"),
                "--beta-schedule",
                "linear",
                "--algo",
                "bc-rnn",
                "--learner.bc-rnn.rnn-hidden",
                "16",
            ]
        )
        == 0
    )
    assert (
        cli_main(["dagger", *common, "--out", str(tmp_path / "h"), "--variant", "hg-dagger"]) == 0
    )
    assert cli_main(["dart", *common, "--out", str(tmp_path / "t"), "--init-spread", "0"]) == 0
    out = capsys.readouterr().out
    assert "dagger:" in out and "hg-dagger:" in out and "dart:" in out
    rows = json.loads(Path(tmp_path / "d" / "rounds.json").read_text())
    assert rows[1]["beta"] == 0.0 and len(rows) == 2
    # --init-spread 0: every episode starts from the nominal layout, and the data file and the
    # checkpoint carry the setting, so training, evaluation and the viewer use it too
    with DemoFile(tmp_path / "t" / "data.hdf5") as f:
        assert f.env_args["env_kwargs"] == {"init_spread": 0.0}
        starts = np.stack([f.episode(d)["states"][0] for d in f.demos])
    assert len(starts) == 4
    np.testing.assert_array_equal(starts, np.broadcast_to(starts[0], starts.shape))
    meta = json.loads((tmp_path / "t" / "policy" / "config.json").read_text())["extra"]
    assert meta["env_kwargs"] == {"init_spread": 0.0}
    with DemoFile(tmp_path / "d" / "data.hdf5") as f:  # the default leaves the task as it was
        assert f.env_args["env_kwargs"] == {}
        assert len({f.episode(d)["states"][0].tobytes() for d in f.demos}) == len(f.demos)


def _errors(policy, episodes):
    runner = PolicyRunner(policy, 1)
    out = []
    for ep in episodes:
        runner.reset()
        for t in range(len(ep["actions"])):
            out.append(runner.act(ep["obs"]["state"][t : t + 1])[0] - ep["actions"][t])
    return np.asarray(out)


def test_dart_noise_is_the_learners_error_on_states_it_was_not_trained_on(tmp_path):
    rows = run_dart(
        DartConfig(
            task="iltk/Reach-v0",
            rounds=2,
            episodes_per_round=3,
            initial_demos=3,
            eval_episodes=1,
            out=tmp_path,
            learner=TINY,
            num_envs=1,
        ),
        progress=False,
    )
    with DemoFile(tmp_path / "data.hdf5") as f:
        round1 = [f.episode(d) for d in f.demos if 10_000 <= int(f.demo_attrs(d)["seed"]) < 20_000]
    assert len(round1) == 3
    # round 2's noise: the round-0 policy's errors on round 1's episodes (held out from it)
    held_out = _errors(load_policy(tmp_path / "round_0"), round1)
    expected = np.sqrt(np.diag(estimate_covariance(held_out)))
    np.testing.assert_allclose(rows[2]["noise_std"], expected, atol=2e-4)
    # not the training error of the round-1 policy on them, which underestimates it
    trained = _errors(load_policy(tmp_path / "round_1"), round1)
    assert np.sqrt(np.mean(trained**2)) < np.sqrt(np.mean(held_out**2))
    assert not (tmp_path / "noise_probe.hdf5").exists()


def test_help_reflows_multiline_docstrings(monkeypatch, capsys):
    """An attribute docstring is one paragraph in --help, not broken where the source is."""
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["dagger", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    # the source breaks the line after "k/rounds,"; at 80 columns a reflowed paragraph
    # carries on with the next words on the same line
    assert any("k/rounds, exponential beta^k" in line for line in out.splitlines()), out


def test_dagger_resumes_after_its_last_completed_round(tmp_path, capsys):
    """A run cut short in round 2 (its rounds.json has rows 0-1, data.hdf5 already some of
    round 2's episodes) resumes to the same data and rows as a run never stopped."""
    common = ["dagger", "--task", "iltk/Reach-v0", "--episodes-per-round", "2"]
    common += ["--initial-demos", "2", "--eval-episodes", "2", "--num-envs", "1"]
    common += ["--learner.steps-per-round", "20", "--learner.batch-size", "32", "--learner.device"]
    common += ["cpu", "--learner.bc.hidden", "16"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli_main([*common, "--rounds", "2", "--out", str(whole)]) == 0
    assert cli_main([*common, "--rounds", "2", "--out", str(cut)]) == 0
    # as a kill in round 2 leaves it: two rows, round 2's episodes in data.hdf5
    rows = json.loads((cut / "rounds.json").read_text())
    (cut / "rounds.json").write_text(json.dumps(rows[:2]))
    shutil.rmtree(cut / "round_2")
    capsys.readouterr()
    assert cli_main([*common, "--rounds", "2", "--out", str(cut)]) == 2  # not without a flag
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main([*common, "--rounds", "2", "--out", str(cut), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming at round 2 (4 episodes in data.hdf5, 2 episodes of round 2 dropped)" in err
    got = json.loads((cut / "rounds.json").read_text())
    want = json.loads((whole / "rounds.json").read_text())
    assert [r["round"] for r in got] == [0, 1, 2]
    for a, b in zip(got, want):
        assert a["expert_labels"] == b["expert_labels"] and a["steps"] == b["steps"]
        assert a["success_rate"] == b["success_rate"]
    with DemoFile(cut / "data.hdf5") as f, DemoFile(whole / "data.hdf5") as g:
        assert len(f.demos) == len(g.demos) == 6
        np.testing.assert_array_equal(
            f.episode("demo_5")["actions"], g.episode("demo_5")["actions"]
        )
    # finished: said; more rounds go on; other settings are refused by name
    assert cli_main([*common, "--rounds", "2", "--out", str(cut), "--resume"]) == 2
    assert "the run is finished (3 rounds, 0 to 2)" in capsys.readouterr().err
    assert cli_main([*common, "--rounds", "3", "--out", str(cut), "--resume", "--beta", "0.9"]) == 2
    assert "--beta 0.5 -> 0.9" in capsys.readouterr().err
    assert cli_main([*common, "--rounds", "3", "--out", str(cut), "--resume"]) == 0
    assert len(json.loads((cut / "rounds.json").read_text())) == 4
    # a live run (its data file held) is neither resumed nor overwritten by a second one
    import os

    from iltk.files import WriterLock

    capsys.readouterr()
    with WriterLock(cut / "data.hdf5"):
        for flag in ("--resume", "--overwrite"):
            assert cli_main([*common, "--rounds", "4", "--out", str(cut), flag]) == 2
            assert f"pid {os.getpid()}" in capsys.readouterr().err
    assert len(json.loads((cut / "rounds.json").read_text())) == 4  # untouched
