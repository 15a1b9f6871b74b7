"""The training core (iltk/training.py) and the policy registry, on their own."""

import csv
import math
import sys
import textwrap

import pytest
import torch

from iltk.policies import POLICY_REGISTRY, load_policy, make_policy, register_policy
from iltk.policies.configs import PolicyConfig
from iltk.training import Optimization, RunFolder, RunningMean, lr_lambda


def test_lr_schedules():
    cos = lr_lambda(10, 110, "cosine")
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(10) == pytest.approx(1.0) and cos(60) == pytest.approx(0.5)
    assert cos(110) == pytest.approx(0.0, abs=1e-12) and cos(500) == pytest.approx(0.0, abs=1e-12)
    lin = lr_lambda(0, 100, "linear")
    assert lin(0) == 1.0 and lin(25) == pytest.approx(0.75) and lin(100) == 0.0
    assert lr_lambda(5, 100, "constant")(50) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_lambda(0, 10, "step")


def test_optimization_clips_and_keeps_tensors():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = Optimization([w], lr=0.1, total_steps=10, grad_clip=1.0, schedule="linear")
    info = opt.step((w * 10).sum())  # gradient (10, 10): norm 14.14, clipped to 1
    assert isinstance(info["grad_norm"], torch.Tensor)
    assert float(info["grad_norm"]) == pytest.approx(math.sqrt(200), rel=1e-5)
    assert info["lr"] == pytest.approx(0.1)
    # Adam's first step moves each weight by ~lr whatever the gradient's scale
    assert w.detach().tolist() == pytest.approx([2.9, 3.9], abs=1e-3)
    assert opt.lr == pytest.approx(0.09)  # the linear schedule after one of ten steps
    state = opt.state_dict()
    other = Optimization(
        [torch.nn.Parameter(w.detach().clone())], lr=0.1, total_steps=10, schedule="linear"
    )
    other.load_state_dict(state)
    assert other.lr == pytest.approx(0.09)


def test_optimization_clips_as_torch_does():
    """Its own clipping (one norm over all gradients, one scale) leaves the gradients
    torch's clip_grad_norm_ leaves, an unused parameter included, and none below the max."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    unused = torch.nn.Parameter(torch.ones(3))
    ref = [p.detach().clone().requires_grad_() for p in net.parameters()]
    x = torch.randn(16, 5)

    def loss_of(w1, b1, w2, b2):
        return (torch.tanh(x @ w1.T + b1) @ w2.T + b2).pow(2).sum() * 10

    for max_norm, clipped in ((0.5, True), (1e6, False)):
        opt = Optimization([*net.parameters(), unused], lr=1e-3, total_steps=10, grad_clip=max_norm)
        info = opt.step(loss_of(*net.parameters()))
        for r in ref:
            r.grad = None
        loss_of(*ref).backward()
        norm = torch.nn.utils.clip_grad_norm_(ref, max_norm)
        assert float(info["grad_norm"]) == pytest.approx(float(norm), rel=1e-5)
        assert (float(norm) > max_norm) == clipped
        for p, r in zip(net.parameters(), ref):
            torch.testing.assert_close(p.grad, r.grad)
        assert unused.grad is None
        for p, r in zip(net.parameters(), ref):
            r.data.copy_(p.data)


def test_running_mean_reads_once():
    m = RunningMean()
    assert m.pop() is None
    for v in (1.0, 2.0, 6.0):
        m.add(torch.tensor(v))
    assert m.pop() == pytest.approx(3.0) and m.pop() is None


def test_run_folder_logs_and_resume_drops_later_rows(tmp_path):
    run = RunFolder(tmp_path / "run", ["loss"], resume=False, overwrite=False)
    run.open_logs(0)
    for step in (10, 20, 30):
        run.log("train", step, {"loss": 1.0 / step})
    run.close()
    assert (
        run.plot("loss", {"train": ([10, 20], [0.1, 0.05])}, xlabel="s", ylabel="l", title="t")
        .stat()
        .st_size
        > 1000
    )
    assert run.plot("empty", {"x": ([], [])}, xlabel="s", ylabel="l", title="t") is None
    # a second run into the same folder is refused; a resume from step 20 drops row 30
    with pytest.raises(ValueError, match="earlier run"):
        RunFolder(tmp_path / "run", ["loss"], resume=False, overwrite=False)
    again = RunFolder(tmp_path / "run", ["loss"], resume=True, overwrite=False)
    again.open_logs(20)
    again.log("train", 25, {"loss": 0.04})
    again.close()
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [10, 20, 25]
    assert rows[0]["kind"] == "train" and float(rows[0]["loss"]) == pytest.approx(0.1)


def test_a_new_policy_registers_once(tmp_path, monkeypatch):
    """One register_policy call makes a policy buildable, saveable and loadable by name."""
    (tmp_path / "my_policy.py").write_text(
        textwrap.dedent("""
        import torch
        from iltk.policies.base import Policy

        class Linear(Policy):
            kind = "step"

            def __init__(self, config):
                super().__init__(config)
                self.net = torch.nn.Linear(config.state_dim, config.action_dim)

            def loss(self, batch):
                loss = ((self.net(batch["obs"]["state"]) - batch["actions"]) ** 2).mean()
                return loss, {"loss": loss.detach()}

            @torch.no_grad()
            def predict(self, obs):
                return self.net(obs["state"])
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    register_policy("my-linear", config=PolicyConfig, entry_point="my_policy:Linear")
    try:
        with pytest.raises(ValueError, match="registered twice"):
            register_policy("my-linear", config=PolicyConfig, entry_point="my_policy:Linear")
        policy = make_policy("my-linear", PolicyConfig(state_dim=3, action_dim=2))
        batch = {"obs": {"state": torch.ones(4, 3)}, "actions": torch.zeros(4, 2)}
        loss, info = policy(batch)  # the loss goes through forward
        assert loss.shape == () and float(info["loss"]) == pytest.approx(float(loss.detach()))
        policy.save(tmp_path / "ckpt")
        back = load_policy(tmp_path / "ckpt")
        assert back.name == "my-linear"
        assert torch.equal(back.net.weight, policy.net.weight)
    finally:
        POLICY_REGISTRY.pop("my-linear")
        sys.modules.pop("my_policy", None)


def test_a_run_folder_has_one_writer(tmp_path, capsys):
    """A second run into a live run folder, or --overwrite of it, is refused at once with
    the holder's pid and touches nothing; once the first closes, the folder is free."""
    import os

    from iltk.cli import main as cli_main
    from iltk.collect import collect_demos
    from iltk.files import LockedError

    out = tmp_path / "run"
    first = RunFolder(out, ["loss"], resume=False, overwrite=False)
    (out / "metrics.csv").write_text("step,kind,loss\n")  # what the live run has written
    try:
        for kw in (dict(resume=False, overwrite=False), dict(resume=True, overwrite=False),
                   dict(resume=False, overwrite=True)):  # fmt: skip
            with pytest.raises(LockedError, match=f"pid {os.getpid()}.*another --out"):
                RunFolder(out, ["loss"], **kw)
        assert (out / "metrics.csv").exists()  # --overwrite deleted nothing of the live run
        data = tmp_path / "reach.hdf5"
        collect_demos("iltk/Reach-v0", data, 2, progress=False)
        argv = ["train", "--dataset", str(data), "--out", str(out), "--steps", "2"]
        assert cli_main([*argv, "--overwrite", "--eval-episodes", "0", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is writing this run" in err[0], err
        for other in (
            ["ppo", "--task", "Pendulum-v1", "--resume"],
            ["finetune", "--policy", str(tmp_path / "no_such"), "--overwrite"],
            ["irl", "--dataset", str(data), "--overwrite"],
        ):
            if other[0] == "finetune":  # it reads its policy first: give it one
                policy = tmp_path / "bc"
                assert cli_main([*argv[:3], "--out", str(policy), "--steps", "2", "--no-progress",
                                 "--eval-episodes", "0"]) == 0  # fmt: skip
                other[2] = str(policy / "last")
            capsys.readouterr()
            assert cli_main([*other, "--out", str(out), "--no-progress"]) == 2, other
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"pid {os.getpid()}" in err[0], (other, err)
    finally:
        first.close()
    assert not (tmp_path / "run.lock").exists()
    RunFolder(out, ["loss"], resume=False, overwrite=True).close()  # free again


def test_auto_threads_take_the_cores_nobody_else_uses(monkeypatch):
    import torch

    import iltk.training as training
    from iltk.training import AdaptiveThreads, threads_for

    assert threads_for(2, 0.05, 2) == 2  # idle: every core
    assert threads_for(2, 1.0, 2) == 1  # one busy process beside: one thread
    assert threads_for(2, 0.6, 2) == 1  # a core more than half used is not free
    assert threads_for(2, 3.0, 2) == 1  # never fewer than one
    assert threads_for(16, 2.0, 4) == 4  # at most `most`
    # the measurement: other processes' core-seconds are the machine's minus this one's
    clock = {"t": 100.0, "busy": 1000.0, "own": 10.0}
    monkeypatch.setattr(training.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(training.time, "sleep", lambda s: clock.update(t=clock["t"] + s))
    monkeypatch.setattr(training, "_busy_core_seconds", lambda: clock["busy"])
    monkeypatch.setattr(training.os, "times", lambda: (clock["own"], 0.0, 0, 0, 0))
    monkeypatch.setattr(training.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    before = torch.get_num_threads()
    try:
        auto = AdaptiveThreads(0, every=5.0)
        assert auto.count == 2 and torch.get_num_threads() == 2  # nothing else ran
        # 5 s later: the machine spent 9 core-seconds, this process 4: another job's 1 core
        clock.update(t=clock["t"] + 5.0, busy=clock["busy"] + 9.0, own=clock["own"] + 4.0)
        assert auto.step() == 1 and torch.get_num_threads() == 1
        clock.update(t=clock["t"] + 1.0, busy=clock["busy"] + 2.0, own=clock["own"] + 1.0)
        assert auto.step() == 1  # not re-measured before `every` seconds
        clock.update(t=clock["t"] + 5.0, busy=clock["busy"] + 8.0, own=clock["own"] + 8.0)
        assert auto.step() == 2  # the other job ended: both cores again
        assert AdaptiveThreads(3).count == 3 and torch.get_num_threads() == 3  # fixed: as given
    finally:
        torch.set_num_threads(before)


def test_an_interrupt_a_callback_swallowed_stops_the_next_step(reach_demos, tmp_path):
    """A Ctrl-C raised inside a weakref callback is printed and dropped by CPython; the
    command line records it, and the next training or control step raises it again."""
    import weakref

    from iltk import interrupts
    from iltk.algos.supervised import TrainConfig, Trainer
    from iltk.cli import _on_sigint

    class Thing:
        pass

    def callback(ref):  # what the SIGINT handler does when the signal lands here
        _on_sigint(2, None)

    thing = Thing()
    ref = weakref.ref(thing, callback)
    del thing  # the KeyboardInterrupt inside the callback is "ignored" by CPython
    assert ref() is None
    cfg = TrainConfig(dataset=reach_demos, out=tmp_path / "r", steps=5, eval_episodes=0)
    trainer = Trainer(cfg)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_step()
    trainer.train_step()  # raised once: the next step trains
    interrupts.clear()
