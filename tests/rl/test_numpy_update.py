"""PPO's numpy update against autograd and torch's Adam: same weights, same resume."""

import copy

import numpy as np
import pytest
import torch

import iltk.algos.ppo as ppo_module
from iltk.algos.ppo import train_ppo
from iltk.algos.settings import PPOConfig, PPOSettings
from iltk.cli import main as cli_main
from iltk.policies import load_policy
from iltk.rl.numpy_update import why_not
from iltk.rl.ppo import ppo_update
from iltk.rl.updaters import NumpyUpdater, TorchUpdater
from iltk.training import Optimization


def _flat(policy):
    return torch.cat([p.detach().reshape(-1) for p in policy.parameters()])


def _update(start, batch, cfg, backend, optim_state=None):
    """One ppo_update (cfg.n_epochs over the batch) from ``start`` through the backend's
    updater; returns the policy, its Optimization and the logs."""
    policy = copy.deepcopy(start)
    optim = Optimization(
        policy.parameters(),
        lr=cfg.lr,
        total_steps=1000,
        schedule=cfg.lr_schedule,
        grad_clip=cfg.max_grad_norm,
        eps=1e-5,
        amp=False,
    )
    if optim_state is not None:
        optim.load_state_dict(optim_state)
    if backend == "numpy":
        updater = NumpyUpdater(policy, optim, max_grad_norm=cfg.max_grad_norm)
    else:
        updater = TorchUpdater(policy, optim)
    logs, _ = ppo_update(policy, updater, batch, cfg, 0.5, torch.Generator().manual_seed(3))
    updater.save_to(optim.opt)
    return policy, optim, logs


CASES = {
    "clip": dict(objective="clip"),
    "kl-penalty": dict(objective="kl-penalty"),
    "value-clip-entropy-linear-lr": dict(clip_range_vf=0.2, ent_coef=0.01, lr_schedule="linear"),
    "relu-small-grad-clip": dict(max_grad_norm=0.05),
}


@pytest.mark.parametrize("case", list(CASES))
def test_numpy_update_matches_autograd(case, small_policy, rollout_batch):
    """From the same weights, batch and shuffles, the numpy update and autograd with
    torch's AdamW end at the same weights after 3 epochs of 64-sample minibatches (12
    Adam steps), with the same losses logged; and both moved the weights far more than
    they disagree."""
    start = small_policy("relu" if "relu" in case else "tanh")
    batch = rollout_batch(start)
    cfg = PPOSettings(n_epochs=3, lr=1e-3, **CASES[case])
    ref, _, ref_logs = _update(start, batch, cfg, "torch")
    fast, _, fast_logs = _update(start, batch, cfg, "numpy")
    moved = (_flat(ref) - _flat(start)).abs().max()
    assert moved > 5e-3
    torch.testing.assert_close(_flat(fast), _flat(ref), rtol=1e-4, atol=2e-6)
    for key in ("pg_loss", "v_loss", "approx_kl", "clip_frac", "kl"):
        assert fast_logs[key] == pytest.approx(ref_logs[key], rel=1e-4, abs=1e-6), key
    assert 0 < ref_logs["clip_frac"] < 1 or cfg.objective != "clip"
    assert fast_logs["updates"] == ref_logs["updates"] == 12


def test_numpy_update_stops_at_the_target_kl_as_torch(small_policy, rollout_batch):
    start = small_policy()
    batch = rollout_batch(start, off=0.0)  # collected by this very policy: the KL starts at 0
    cfg = PPOSettings(n_epochs=10, lr=1e-2, target_kl=0.002)
    ref, _, ref_logs = _update(start, batch, cfg, "torch")
    fast, _, fast_logs = _update(start, batch, cfg, "numpy")
    assert 0 < fast_logs["updates"] == ref_logs["updates"] < 40  # stopped early, at one step
    torch.testing.assert_close(_flat(fast), _flat(ref), rtol=1e-4, atol=2e-6)


def test_adam_state_round_trips_through_torch(small_policy, rollout_batch):
    """The numpy update's Adam moments, saved in torch's layout, let torch's AdamW carry
    on exactly where the numpy update stopped, and the other way round (a resumed run
    may change backend)."""
    start = small_policy()
    cfg = PPOSettings(n_epochs=2, lr=1e-3)
    first, second = rollout_batch(start, seed=1), rollout_batch(start, seed=2)
    mid, optim, _ = _update(start, first, cfg, "numpy")
    state = optim.state_dict()  # (torch's load_state_dict may keep its tensors: copies)
    ref, _, _ = _update(mid, second, cfg, "torch", copy.deepcopy(state))
    fast, _, _ = _update(mid, second, cfg, "numpy", copy.deepcopy(state))
    torch.testing.assert_close(_flat(fast), _flat(ref), rtol=1e-4, atol=2e-6)
    # a fresh Adam would take a different second step: the moments were carried
    fresh, _, _ = _update(mid, second, cfg, "torch")
    assert (_flat(fresh) - _flat(ref)).abs().max() > 1e-4


def test_train_ppo_numpy_and_torch_backends_agree(tmp_path):
    """Two rollouts of Pendulum through train_ppo with each backend: the same run (the
    same episodes, actions within float error, the same final weights), and the numpy
    run's checkpoint loads like any other."""
    results = {}
    for backend in ("torch", "numpy"):
        cfg = PPOConfig(
            task="Pendulum-v1",
            total_timesteps=512,
            ppo=PPOSettings(n_steps=256, n_epochs=2, update_backend=backend),
            eval_episodes=0,
            progress=False,
            out=tmp_path / backend,
        )
        train_ppo(cfg)
        results[backend] = load_policy(tmp_path / backend / "last")
    a, b = results["torch"], results["numpy"]
    assert a.log_std.abs().max() > 1e-3  # it learned (the log std starts at 0)
    torch.testing.assert_close(_flat(b), _flat(a), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(b.obs_mean.numpy(), a.obs_mean.numpy(), rtol=1e-4, atol=1e-4)


def test_numpy_backend_is_refused_where_it_cannot_run(tmp_path, capsys, monkeypatch, small_policy):
    policy, cpu = small_policy(), torch.device("cpu")
    assert "compile" in why_not(cpu, policy, compile=True)
    assert "CPU" in why_not(torch.device("cuda"), policy)
    assert "autograd" in why_not(cpu, policy, aux_losses=[lambda *a: 0])
    assert "learning rate" in why_not(cpu, policy, critic_lr=1e-3, lr=3e-4)
    assert why_not(cpu, policy) is None
    out = tmp_path / "run"
    args = ["ppo", "--task", "Pendulum-v1", "--total-timesteps", "64", "--out", str(out)]
    monkeypatch.setattr(ppo_module, "_cxx_compiler", lambda: "c++")  # past --compile's check
    assert cli_main([*args, "--ppo.update-backend", "numpy", "--ppo.compile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ppo.update-backend" in err[0], err
    assert not out.exists()
