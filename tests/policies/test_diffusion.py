"""Diffusion Policy and flow matching: the schedule and samplers by hand, two modes kept
apart, real-time chunking's fixed prefix, the EMA through a checkpoint, refusals."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from iltk.policies import load_policy, make_policy
from iltk.policies.configs import DiffusionConfig
from iltk.policies.diffusion import NoiseSchedule, cosine_betas
from iltk.policies.runners import PolicyRunner


def tiny(**kw) -> DiffusionConfig:
    values = dict(
        state_dim=1,
        action_dim=1,
        action_low=[-2.0],
        action_high=[2.0],
        n_obs_steps=1,
        horizon=4,
        n_action_steps=2,
        down_dims=[16, 32],
        step_embed_dim=16,
        noise_steps=50,
        sampling_steps=10,
        ema_decay=0.0,
    )
    values.update(kw)
    return DiffusionConfig(**values)


def test_the_cosine_schedule_and_the_noising_by_hand():
    n = 10
    betas = cosine_betas(n)

    def abar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    for i in (0, 4, 9):
        assert float(betas[i]) == pytest.approx(min(1 - abar((i + 1) / n) / abar(i / n), 0.999))
    sched = NoiseSchedule(n)
    ab3 = float(np.prod([1 - float(b) for b in betas[:4]]))  # abar at level 3
    assert float(sched.alphas_cumprod[3]) == pytest.approx(ab3, rel=1e-6)
    x0, noise = torch.tensor([[0.5]]), torch.tensor([[-1.0]])
    got = sched.add_noise(x0, noise, torch.tensor([3]))
    assert float(got) == pytest.approx(math.sqrt(ab3) * 0.5 - math.sqrt(1 - ab3), rel=1e-5)
    assert sched.ddim_timesteps(5) == [8, 6, 4, 2, 0]


def test_one_ddim_step_by_hand_with_the_clip():
    sched = NoiseSchedule(100)
    ab = sched.alphas_cumprod
    x, eps = torch.tensor([0.3, 9.0]), torch.tensor([0.2, -0.1])
    got = sched.ddim_step(eps, 60, x, 40, clip=3.0)
    x0 = (x - (1 - ab[60]).sqrt() * eps) / ab[60].sqrt()
    x0 = x0.clamp(-3, 3)  # the second estimate is far outside: clipped
    want = ab[40].sqrt() * x0 + (1 - ab[40]).sqrt() * eps
    torch.testing.assert_close(got, want)
    assert float(x0[1]) == 3.0
    # the last step lands on the clean estimate (abar = 1 past level 0)
    last = sched.ddim_step(eps, 0, x, -1, clip=0.0)
    torch.testing.assert_close(last, (x - (1 - ab[0]).sqrt() * eps) / ab[0].sqrt())


def test_flow_euler_steps_by_hand():
    """With a network that returns a fixed velocity, n Euler steps from z move z by it
    exactly; from z = 0 the chunk is that velocity."""
    policy = make_policy("diffusion", tiny(objective="flow", flow_init="zero", sampling_steps=4))
    policy.eval()
    calls = []

    def velocity(x, level, cond):
        calls.append(level.clone())
        return torch.full_like(x, 0.75)

    policy.net.forward = velocity
    out = policy.predict_chunk({"state": torch.zeros(3, 1, 1)})
    # 0.75 in the network's units, which map the bounds [-2, 2] to [-1, 1]
    torch.testing.assert_close(out, torch.full((3, 4, 1), (0.75 + 1) / 2 * 4 - 2))
    # the levels are t = i / n, scaled to the noise steps
    assert [float(c[0]) for c in calls] == [0.0, 12.5, 25.0, 37.5]


def _bimodal_batch(n, horizon, gen):
    """Every chunk is all +1 or all -1, half and half, from the same observation."""
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    return {
        "obs": {"state": torch.zeros(n, 1, 1)},
        "actions": sign[:, None, None].expand(n, horizon, 1).clone(),
        "weights": torch.ones(n),
    }


def _train_bimodal(policy, steps=400):
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss, _ = policy.loss(_bimodal_batch(128, 4, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.expensive
@pytest.mark.parametrize("objective", ["diffusion", "flow", "regression"])
def test_two_modes_are_kept_apart_by_the_generative_objectives(objective):
    torch.manual_seed(0)
    policy = make_policy("diffusion", tiny(objective=objective))
    _train_bimodal(policy)
    policy.eval()
    out = policy.predict_chunk(
        {"state": torch.zeros(400, 1, 1)}, generator=torch.Generator().manual_seed(1)
    )
    first = out[:, 0, 0]
    if objective == "regression":  # the mean of the two modes: what MSE learns
        assert float(first.abs().max()) < 0.3
        return
    near_plus, near_minus = (first > 0.6).float().mean(), (first < -0.6).float().mean()
    between = (first.abs() < 0.4).float().mean()
    assert near_plus > 0.25 and near_minus > 0.25, (near_plus, near_minus)
    assert between < 0.1, between
    # a chunk stays in its mode: no averaging across steps either
    assert float((out[:, :, 0].sign() != first.sign()[:, None]).float().mean()) < 0.05


@pytest.mark.parametrize("scaling", ["bounds", "zscore"])
@pytest.mark.parametrize("objective", ["diffusion", "flow"])
def test_real_time_chunking_keeps_the_prefix_exactly(objective, scaling):
    torch.manual_seed(0)
    cfg = tiny(objective=objective, n_obs_steps=2, horizon=8, n_action_steps=4)
    policy = make_policy("diffusion", dataclasses.replace(cfg, action_scaling=scaling))
    policy.normalizer.action_mean.fill_(0.3)  # (z-scores, where the scaling uses them)
    policy.normalizer.action_std.fill_(1.7)
    policy.eval()
    obs = {"state": torch.randn(3, 2, 1)}
    prefix = torch.tensor([[[0.123], [-0.456]], [[1.5], [0.25]], [[9.0], [9.0]]])
    mask = torch.tensor([True, True, False])
    out = policy.predict_chunk(obs, prefix=prefix, prefix_mask=mask)
    assert out.shape == (3, 7, 1)
    assert torch.equal(out[:2, :2], prefix[:2])  # bit for bit
    assert not torch.allclose(out[2, :2], prefix[2])  # an env without a prefix is free


def test_the_runner_keeps_an_observation_history_and_joins_chunks_in_real_time():
    torch.manual_seed(0)
    policy = make_policy("diffusion", tiny(n_obs_steps=2, horizon=8, n_action_steps=4, rtc_steps=2))
    policy.eval()
    seen = []
    real = policy.predict_chunk

    def spy(obs, **kw):
        seen.append((obs["state"].clone(), kw.get("prefix")))
        return real(obs, **kw)

    policy.predict_chunk = spy
    runner = PolicyRunner(policy, 1)
    runner.reset()
    chunks = []
    for t in range(12):
        runner.act(np.array([[float(t)]]))
        if runner.queue_pos[0] == 1:  # a chunk was just drawn
            chunks.append(runner.queue[0].copy())
    # a chunk every 4 steps (steps 0, 4, 8), each seeing its last two observations (the
    # episode's first one twice at the start)
    assert len(seen) == 3 and len(chunks) == 3
    torch.testing.assert_close(seen[0][0], torch.tensor([[[0.0], [0.0]]]))
    torch.testing.assert_close(seen[1][0], torch.tensor([[[3.0], [4.0]]]))
    assert seen[0][1] is None
    # each later chunk starts with the 2 actions the one before planned after its 4
    for old, new in zip(chunks, chunks[1:]):
        assert np.array_equal(new[:2], old[4:6])
    # the seams are where generated actions begin (a chunk's third step): one per later
    # chunk; the other 9 steps after the first are inside the plan
    assert len(runner.seam_changes) == 2 and len(runner.inner_changes) == 9


def test_the_ema_acts_and_survives_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    policy = make_policy("diffusion", tiny(ema_decay=0.9))
    ema_before = [p.clone() for p in policy.ema["net"].parameters()]
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for step in range(1, 21):
        loss, _ = policy.loss(_bimodal_batch(32, 4, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        policy.after_step(step)
    trained = torch.cat([p.reshape(-1) for p in policy.net.parameters()])
    ema = torch.cat([p.reshape(-1) for p in policy.ema["net"].parameters()])
    first = torch.cat([p.reshape(-1) for p in ema_before])
    assert not torch.allclose(ema, first) and not torch.allclose(ema, trained)
    assert not any(p.requires_grad for p in policy.ema.parameters())
    policy.save(tmp_path / "ck")
    loaded = load_policy(tmp_path / "ck")
    torch.testing.assert_close(
        torch.cat([p.reshape(-1) for p in loaded.ema["net"].parameters()]), ema
    )
    obs = {"state": torch.zeros(2, 1, 1)}
    policy.eval()
    a = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(3))
    b = loaded.predict_chunk(obs, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(horizon=8, n_obs_steps=2, n_action_steps=8), "longer than the prediction"),
        (dict(sampling_steps=0), "sampling_steps must be >= 1"),
        (dict(noise_steps=5, sampling_steps=10), "cannot exceed noise_steps"),
        (dict(horizon=6, down_dims=[16, 32, 64]), r"divisible by 2\^2"),
        (dict(down_dims=[12]), "divisible by n_groups"),
        (dict(rtc_steps=3, n_action_steps=2), "rtc_steps must be in"),
        (dict(objective="score"), "objective must be one of"),
        (dict(action_scaling="minmax"), "action_scaling must be"),
    ],
)
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kw)


@pytest.mark.parametrize("objective", ["diffusion", "flow"])
def test_trained_by_the_training_core_evaluated_and_replayed_from_its_checkpoint(
    reach_demos, tmp_path, objective
):
    """`iltk train --algo diffusion`: the history batches, the EMA moved after each step,
    a checkpoint `iltk eval` runs with its chunk queue (and with real-time chunking)."""
    from iltk.algos.supervised import TrainConfig, train
    from iltk.cli import main as cli_main

    small = DiffusionConfig(
        objective=objective, down_dims=[16, 32], step_embed_dim=16, sampling_steps=3
    )
    out = tmp_path / "run"
    train(
        TrainConfig(
            algo="diffusion",
            diffusion=small,
            dataset=reach_demos,
            out=out,
            steps=30,
            batch_size=32,
            eval_episodes=0,
            progress=False,
        )
    )
    policy = load_policy(out / "last")
    assert policy.config.objective == objective and policy.config.n_obs_steps == 2
    moved = [
        not torch.equal(a, b)
        for a, b in zip(policy.net.parameters(), policy.ema["net"].parameters())
    ]
    assert any(moved)  # the EMA lags the trained weights
    for extra in ([], ["--chunk.n-action-steps", "4"]):
        args = ["eval", "--policy", str(out / "last"), "--episodes", "2", "--num-envs", "2"]
        assert cli_main(args + extra + ["--json", str(tmp_path / "e.json")]) == 0
        import json

        res = json.loads((tmp_path / "e.json").read_text())
        assert res["episodes"] == 2 and all(e["length"] > 0 for e in res["per_episode"])


def test_bounds_scaling_needs_finite_bounds():
    with pytest.raises(ValueError, match="needs finite action bounds"):
        make_policy("diffusion", tiny(action_low=[], action_high=[]))
    with pytest.raises(ValueError, match="needs finite action bounds"):
        make_policy("diffusion", tiny(action_low=[-float("inf")], action_high=[1.0]))
    make_policy("diffusion", tiny(action_low=[], action_high=[], action_scaling="zscore"))


@pytest.mark.expensive
def test_prefix_training_continues_the_mode_a_prefix_is_in():
    """With prefix training, a chunk given its first actions in one mode goes on in it."""
    torch.manual_seed(0)
    policy = make_policy(
        "diffusion", tiny(objective="flow", prefix_training=2, rtc_steps=2, n_action_steps=2)
    )
    _train_bimodal(policy)
    policy.eval()
    obs = {"state": torch.zeros(200, 1, 1)}
    for sign in (1.0, -1.0):
        prefix = torch.full((200, 2, 1), sign)
        out = policy.predict_chunk(obs, prefix=prefix, generator=torch.Generator().manual_seed(2))
        assert torch.equal(out[:, :2], prefix)
        rest = out[:, 2:, 0] * sign
        assert float((rest > 0.6).float().mean()) > 0.9, rest
