"""Every registered policy: save/load round trip, runner semantics, heads' maths."""

import numpy as np
import pytest
import torch

from iltk.policies import (
    POLICY_REGISTRY,
    PolicyRunner,
    TemporalEnsembler,
    build_config,
    load_policy,
    make_policy,
    set_chunk_execution,
)
from iltk.policies.nets import gmm_log_prob

SMALL = {
    "bc": {"hidden": [32, 32]},
    "bc-rnn": {"rnn_hidden": 16, "seq_len": 4},
    "act": {"d_model": 32, "n_heads": 2, "dim_feedforward": 64, "chunk_size": 5, "latent_dim": 4},
    "actor-critic": {"hidden": [16, 16]},
    "diffusion": {
        "down_dims": [16, 32],
        "step_embed_dim": 16,
        "horizon": 8,
        "n_action_steps": 3,
        "noise_steps": 20,
        "sampling_steps": 3,
    },
}
BASE = dict(state_dim=6, action_dim=3, action_low=[-1] * 3, action_high=[1] * 3)
SMALL["finetune"] = {"base": "bc", "base_config": {**BASE, **SMALL["bc"]}, "critic_hidden": [16]}
SMALL["residual"] = {"base": "act", "base_config": {**BASE, **SMALL["act"]}, "hidden": [16]}
# PPO's policies (and fine-tuning's) act on state observations
STATE_ONLY = {"actor-critic", "finetune", "residual"}
NO_SUPERVISED_LOSS = {"residual"}  # trained with PPO alone


def small_policy(name, images=False, **kw):
    cfg = dict(
        state_dim=6, action_dim=3, action_low=[-1] * 3, action_high=[1] * 3, **SMALL[name], **kw
    )
    if images:
        cfg["image_shapes"] = {"pixels": [24, 24, 3]}
        cfg["lowdim_keys"] = ["state"]
    policy = make_policy(name, build_config(name, cfg))
    rng = np.random.default_rng(0)
    if hasattr(policy, "set_obs_stats"):  # running observation statistics (PPO)
        d = 6 + (3 if policy.frozen_base is not None else 0)  # a residual's: (state, base action)
        policy.set_obs_stats(rng.normal(size=d), rng.uniform(0.5, 2, d))
    for p in (policy, getattr(policy, "base", None)):  # a fine-tuned policy's base too
        if p is not None:
            p.normalizer.set_stats(
                {
                    "state": {"mean": rng.normal(size=6), "std": rng.uniform(0.5, 2, 6)},
                    "actions": {"mean": rng.normal(size=3) * 0.1, "std": rng.uniform(0.2, 0.5, 3)},
                }
            )
    if name == "residual":  # it starts at zero: give the round trip something to carry
        torch.nn.init.normal_(policy.residual.actor[-1].weight, std=0.1)
    return policy


def rollout_actions(policy, obs_seq, n_envs=2):
    runner = PolicyRunner(policy, n_envs)
    runner.reset()
    return np.stack([runner.act(o) for o in obs_seq])


@pytest.mark.parametrize(
    ("name", "images"),
    [(n, i) for n in sorted(POLICY_REGISTRY) for i in (False, True) if not (i and n in STATE_ONLY)],
)
def test_save_load_roundtrip_identical_actions(tmp_path, name, images):
    torch.manual_seed(0)
    policy = small_policy(name, images=images).eval()
    rng = np.random.default_rng(1)
    if images:
        obs_seq = [
            {
                "state": rng.normal(size=(2, 6)).astype(np.float32),
                "pixels": rng.integers(0, 255, (2, 24, 24, 3), dtype=np.uint8),
            }
            for _ in range(8)
        ]
    else:
        obs_seq = [rng.normal(size=(2, 6)).astype(np.float32) for _ in range(8)]
    before = rollout_actions(policy, obs_seq)
    policy.save(tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} >= {
        "config.json",
        "model.safetensors",
        "normalization.safetensors",
    }
    loaded = load_policy(tmp_path / "ckpt")
    after = rollout_actions(loaded, obs_seq)
    np.testing.assert_array_equal(before, after)
    assert type(loaded) is type(policy) and loaded.config == policy.config


@pytest.mark.parametrize("name", sorted(set(POLICY_REGISTRY) - NO_SUPERVISED_LOSS))
def test_loss_is_finite_and_differentiable(name):
    from iltk.data.dataset import NormStats  # noqa: F401  (the data layer's batches)

    policy = small_policy(name)
    b = 8
    spec = policy.batch_spec()
    if spec["kind"] == "step":
        batch = {
            "obs": {"state": torch.randn(b, 6)},
            "actions": torch.rand(b, 3),
            "weights": torch.ones(b),
        }
    elif spec["kind"] == "window":
        L = spec["seq_len"]
        batch = {
            "obs": {"state": torch.randn(b, L, 6)},
            "actions": torch.rand(b, L, 3),
            "mask": torch.ones(b, L, dtype=torch.bool),
            "weights": torch.ones(b, L),
        }
    elif spec["kind"] == "history_chunk":
        n, H = spec["n_obs"], spec["horizon"]
        batch = {
            "obs": {"state": torch.randn(b, n, 6)},
            "actions": torch.rand(b, H, 3),
            "pad": torch.zeros(b, H, dtype=torch.bool),
            "weights": torch.ones(b),
        }
    else:
        K = spec["chunk"]
        batch = {
            "obs": {"state": torch.randn(b, 6)},
            "actions": torch.rand(b, K, 3),
            "pad": torch.zeros(b, K, dtype=torch.bool),
            "weights": torch.ones(b),
        }
    loss, info = policy.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and "loss" in info
    # logged values stay tensors: reading them (a device-to-host sync) waits for log time
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in info.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


def test_rnn_hidden_state_is_carried_and_reset_per_env():
    torch.manual_seed(0)
    policy = small_policy("bc-rnn").eval()
    runner = PolicyRunner(policy, 2)
    obs = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    same = np.stack([obs[0], obs[0]])
    first = runner.act(same)
    second = runner.act(same)
    assert not np.allclose(first, second), "the hidden state did not carry over"
    runner.reset([1])
    third = runner.act(same)
    np.testing.assert_allclose(third[1], first[1], atol=1e-6)  # env 1 restarted
    assert not np.allclose(third[0], first[0])  # env 0 did not


def test_rnn_hidden_state_is_reset_every_seq_len_steps():
    """As robomimic: the hidden state lives for seq_len (here 4) steps, the horizon trained on;
    hidden_reset_every=0 carries it through the whole episode."""
    torch.manual_seed(0)
    obs = np.random.default_rng(1).normal(size=(1, 6)).astype(np.float32)
    periodic = PolicyRunner(small_policy("bc-rnn").eval(), 1)
    acts = [periodic.act(obs) for _ in range(6)]
    np.testing.assert_allclose(acts[4], acts[0], atol=1e-6)  # step 4 starts a new window
    np.testing.assert_allclose(acts[5], acts[1], atol=1e-6)
    assert not np.allclose(acts[3], acts[0])
    torch.manual_seed(0)
    carried = PolicyRunner(small_policy("bc-rnn", hidden_reset_every=0).eval(), 1)
    acts = [carried.act(obs) for _ in range(5)]
    assert not np.allclose(acts[4], acts[0])


def test_temporal_ensemble_hand_computed():
    ens = TemporalEnsembler(num_envs=1, chunk=3, action_dim=1, m=0.5)
    c0 = np.array([[[1.0], [2.0], [3.0]]])  # predicted at t=0 for t=0,1,2
    c1 = np.array([[[10.0], [20.0], [30.0]]])  # at t=1 for t=1,2,3
    c2 = np.array([[[100.0], [200.0], [300.0]]])  # at t=2 for t=2,3,4
    assert ens.update(c0)[0, 0] == pytest.approx(1.0)
    w = np.exp(-0.5 * np.arange(2))  # oldest (c0's 2.0) gets weight 1
    assert ens.update(c1)[0, 0] == pytest.approx((w[0] * 2.0 + w[1] * 10.0) / w.sum())
    w = np.exp(-0.5 * np.arange(3))  # c0's 3.0, c1's 20.0, c2's 100.0 (oldest first)
    assert ens.update(c2)[0, 0] == pytest.approx(
        (w[0] * 3.0 + w[1] * 20.0 + w[2] * 100.0) / w.sum()
    )


def test_temporal_ensemble_sign_of_m():
    def third_step(m):
        ens = TemporalEnsembler(1, 3, 1, m)
        for c in ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]):
            out = ens.update(np.array(c, dtype=float).reshape(1, 3, 1))
        return out[0, 0]  # average of 0 (oldest), 1, 2 (newest)

    assert third_step(0.0) == pytest.approx(1.0)
    assert third_step(1.0) < 1.0  # m > 0 favours older predictions
    assert third_step(-1.0) > 1.0  # m < 0 favours newer predictions
    ens = TemporalEnsembler(2, 3, 1, 0.0)
    ens.update(np.ones((2, 3, 1)))
    ens.reset([0])
    out = ens.update(np.full((2, 3, 1), 4.0))
    assert out[0, 0] == 4.0 and out[1, 0] == pytest.approx(2.5)


def test_act_open_loop_queue():
    torch.manual_seed(0)
    policy = small_policy("act", temporal_ensemble=False, n_action_steps=3).eval()
    runner = PolicyRunner(policy, 1)
    calls = []
    orig = policy.predict_chunk
    policy.predict_chunk = lambda obs, **kw: (calls.append(1), orig(obs, **kw))[1]
    obs = np.zeros((1, 6), np.float32)
    acts = [runner.act(obs) for _ in range(7)]
    assert len(calls) == 3  # steps 0, 3 and 6
    chunk = orig({"state": torch.zeros(1, 6)}).numpy().clip(-1, 1)
    np.testing.assert_allclose(np.concatenate(acts[:3]), chunk[0, :3], atol=1e-6)


def test_set_chunk_execution_changes_how_act_acts_and_is_saved(tmp_path):
    torch.manual_seed(0)
    policy = small_policy("act", temporal_ensemble=True).eval()
    calls = []
    orig = policy.predict_chunk
    policy.predict_chunk = lambda obs, **kw: (calls.append(1), orig(obs, **kw))[1]
    set_chunk_execution(policy, n_action_steps=2)  # implies no ensembling
    assert policy.config.temporal_ensemble is False and policy.config.n_action_steps == 2
    runner = PolicyRunner(policy, 1)
    obs = np.zeros((1, 6), np.float32)
    acts = [runner.act(obs) for _ in range(4)]
    assert len(calls) == 2  # steps 0 and 2
    chunk = orig({"state": torch.zeros(1, 6)}).numpy().clip(-1, 1)
    np.testing.assert_allclose(np.concatenate(acts[:2]), chunk[0, :2], atol=1e-6)
    del policy.predict_chunk
    policy.save(tmp_path / "act")
    loaded = load_policy(tmp_path / "act")
    assert (loaded.config.temporal_ensemble, loaded.config.n_action_steps) == (False, 2)
    with pytest.raises(ValueError, match="n_action_steps"):
        set_chunk_execution(loaded, n_action_steps=6)  # beyond the chunk of 5
    assert set_chunk_execution(loaded) is loaded and loaded.config.n_action_steps == 2


def test_set_chunk_execution_reaches_a_residual_base_and_refuses_step_policies(tmp_path):
    policy = small_policy("residual").eval()
    assert (policy.base.config.temporal_ensemble, policy.base.config.n_action_steps) == (False, 1)
    set_chunk_execution(policy, temporal_ensemble=True, ensemble_m=-0.5)
    policy.save(tmp_path / "res")
    loaded = load_policy(tmp_path / "res")
    assert loaded.base.config.temporal_ensemble is True
    assert loaded.base.config.ensemble_m == -0.5
    obs = np.random.default_rng(1).normal(size=(3, 2, 6)).astype(np.float32)
    np.testing.assert_allclose(
        rollout_actions(loaded, obs), rollout_actions(policy, obs), atol=1e-6
    )
    with pytest.raises(ValueError, match="predicts no action chunks"):
        set_chunk_execution(small_policy("bc"), temporal_ensemble=False)


def test_gmm_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    b, k, a = 7, 4, 3
    logits, means = torch.randn(b, k), torch.randn(b, k, a)
    scales = torch.rand(b, k, a) + 0.1
    actions = torch.randn(b, a)
    dist = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=logits),
        torch.distributions.Independent(torch.distributions.Normal(means, scales), 1),
    )
    torch.testing.assert_close(gmm_log_prob(actions, logits, means, scales), dist.log_prob(actions))


def test_gmm_head_fits_two_modes():
    """A GMM head learns both modes of a bimodal target where MSE regresses to the mean."""
    torch.manual_seed(0)
    gmm = small_policy("bc", head="gmm", gmm_modes=2)
    det = small_policy("bc")
    obs = torch.zeros(256, 6)
    actions = torch.where(torch.rand(256, 1) < 0.5, 0.8, -0.8).expand(256, 3).clone()
    for policy in (gmm, det):
        policy.normalizer.set_stats(
            {
                "state": {"mean": np.zeros(6), "std": np.ones(6)},
                "actions": {"mean": np.zeros(3), "std": np.ones(3)},
            }
        )
        opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
        for _ in range(300):
            loss, _ = policy.loss({"obs": {"state": obs}, "actions": actions})
            opt.zero_grad()
            loss.backward()
            opt.step()
    g = gmm.eval().predict({"state": obs[:1]})
    d = det.eval().predict({"state": obs[:1]})
    assert torch.allclose(g.abs(), torch.full_like(g, 0.8), atol=0.1)  # a mode, not the mean
    assert d.abs().max() < 0.2  # the deterministic head averages the modes


def test_gaussian_head_samples_only_when_asked():
    from iltk.policies.nets import GaussianHead

    torch.manual_seed(0)
    head = GaussianHead(8, 3)
    h = torch.randn(5, 8)
    mean, log_std = head.params(h)
    torch.testing.assert_close(head.act(h, deterministic=True), mean)
    draws = torch.stack([head.act(h, deterministic=False) for _ in range(2000)])
    assert not torch.allclose(draws[0], draws[1])
    torch.testing.assert_close(draws.mean(0), mean, atol=0.1, rtol=0)
    torch.testing.assert_close(draws.std(0), torch.exp(log_std), atol=0.1, rtol=0.1)
    # a BC policy with the Gaussian head: stochastic_eval samples, the default does not
    for stochastic in (False, True):
        policy = small_policy("bc", head="gaussian", stochastic_eval=stochastic).eval()
        obs = {"state": torch.randn(4, 6)}
        a, b = policy.predict(obs), policy.predict(obs)
        assert torch.equal(a, b) != stochastic
