"""What other algorithms add to PPO composes from outside: a reward source (with absorbing
ends), callbacks, auxiliary losses, a critic learning rate of its own."""

import numpy as np
import pytest
import torch

from iltk.algos.settings import PPOConfig, PPOSettings
from iltk.envs import make_vector_env
from iltk.policies import make_policy
from iltk.policies.configs import ActorCriticConfig
from iltk.rl.ppo import PPO, Callback, CriticWarmup
from iltk.rl.rewards import Absorbing, EnvReward, RewardSource

TASK = "InvertedPendulum-v5"  # random actions end its episodes within ~10 steps


def _ppo(reward=None, callbacks=(), aux_losses=(), critic_lr=None, num_envs=2, **settings):
    cfg = PPOConfig(
        task=TASK,
        total_timesteps=10_000,
        ppo=PPOSettings(n_steps=64, num_envs=num_envs, batch_size=32, n_epochs=2, **settings),
    )
    envs = make_vector_env(TASK, num_envs, asynchronous=False)
    torch.manual_seed(0)
    policy = make_policy(
        "actor-critic",
        ActorCriticConfig(
            state_dim=4,
            action_dim=1,
            lowdim_keys=["state"],
            action_low=[-3.0],
            action_high=[3.0],
            hidden=[16, 16],
        ),
    )
    ppo = PPO(
        cfg,
        envs,
        policy,
        keys=["state"],
        device=torch.device("cpu"),
        reward=reward,
        callbacks=callbacks,
        aux_losses=aux_losses,
        critic_lr=critic_lr,
    )
    return ppo, envs


class HeldReward(RewardSource):
    """Nothing per step; an ended episode is its final state held ``k`` more steps at 1."""

    def __init__(self, k: int | None):
        self.k, self.asked = k, []

    def rewards(self, transition, states, next_states):
        return np.zeros(len(states))

    def absorbing(self, transition, ended, final_states, steps_done):
        self.asked.append((ended.copy(), final_states.copy(), steps_done.copy()))
        steps = None if self.k is None else np.full(len(ended), self.k)
        return Absorbing(np.ones(len(ended)), steps)


@pytest.mark.parametrize("k", [3, None])
def test_an_absorbing_end_is_bootstrapped_with_its_held_reward(k):
    g = 0.9
    source = HeldReward(k)
    ppo, envs = _ppo(reward=source, gamma=g, normalize_reward=False)
    try:
        ppo.collect()
    finally:
        envs.close()
    buf = ppo.buffer
    ends = buf.truncated
    assert ends.sum() >= 4 and not buf.terminated.any()  # every end was made absorbing
    held = (1 - g**k) / (1 - g) if k is not None else 1 / (1 - g)
    np.testing.assert_allclose(buf.final_values[ends], held)
    np.testing.assert_allclose(buf.final_values[~ends], 0.0)
    assert sum(len(e) for e, _, _ in source.asked) == int(ends.sum())
    # the source saw the true final states (4 numbers each) and the episodes' lengths
    assert all(f.shape[1] == 4 and (s >= 1).all() for _, f, s in source.asked)
    # and the advantage of an end step is its reward plus gamma times the held value
    t, n = np.argwhere(ends)[0]
    np.testing.assert_allclose(
        buf.advantages[t, n], g * held - buf.values[t, n], rtol=1e-6, atol=1e-6
    )


def test_a_plain_termination_bootstraps_from_zero():
    ppo, envs = _ppo(reward=EnvReward(), normalize_reward=False)
    try:
        ppo.collect()
    finally:
        envs.close()
    buf = ppo.buffer
    assert buf.terminated.sum() >= 4 and not buf.truncated.any()
    t, n = np.argwhere(buf.terminated)[0]
    np.testing.assert_allclose(buf.advantages[t, n], buf.rewards[t, n] - buf.values[t, n])


class Recorder(Callback):
    metrics = ("seen",)

    def __init__(self):
        self.calls = []

    def on_update_start(self, ppo):
        self.calls.append(("start", ppo.iterations))

    def on_update_end(self, ppo):
        self.calls.append(("end", ppo.iterations))
        return {"seen": float(len(self.calls))}


def test_callbacks_frame_each_update_and_the_warm_up_freezes_the_actor():
    rec = Recorder()
    ppo, envs = _ppo(callbacks=[CriticWarmup(2), rec], critic_lr=1e-3)
    critic0 = [p.detach().clone() for p in ppo.policy.critic_parameters()]
    try:
        rows = [ppo.iteration()[0] for _ in range(3)]
    finally:
        envs.close()
    assert rec.calls == [
        ("start", 0),
        ("end", 1),
        ("start", 1),
        ("end", 2),
        ("start", 2),
        ("end", 3),
    ]
    assert [r["warmup"] for r in rows] == [1.0, 1.0, 0.0] and rows[-1]["seen"] == 6.0
    # two learning rates: the optimizer holds the actor's and the critic's groups
    assert [g["lr"] for g in ppo.optim.opt.param_groups] == [3e-4, 1e-3]
    critic = ppo.policy.critic_parameters()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(critic0, critic))


def test_the_actor_stays_put_through_a_warm_up_and_moves_after():
    ppo, envs = _ppo(callbacks=[CriticWarmup(2)])
    actor0 = [p.detach().clone() for p in ppo.policy.actor_parameters()]
    try:
        ppo.iteration()
        ppo.iteration()
        frozen = [p.detach().clone() for p in ppo.policy.actor_parameters()]
        ppo.iteration()
    finally:
        envs.close()
    assert all(torch.equal(a, b) for a, b in zip(actor0, frozen))
    assert any(not torch.equal(a, b) for a, b in zip(frozen, ppo.policy.actor_parameters()))


def test_an_auxiliary_loss_reaches_the_actor():
    """A strong pull of the mean towards 2.5 moves the actor's actions there; without it
    they stay near 0."""
    pull = lambda obs, mean, log_std: 50.0 * (mean - 2.5).pow(2).mean()  # noqa: E731
    means = {}
    for name, aux in (("free", ()), ("pulled", (pull,))):
        ppo, envs = _ppo(aux_losses=aux, lr=1e-2, max_grad_norm=10.0)
        try:
            for _ in range(4):
                ppo.iteration()
        finally:
            envs.close()
        obs = torch.as_tensor(ppo.buffer.obs.reshape(-1, 4))
        with torch.no_grad():
            means[name] = float(ppo.policy.actor(obs).mean())
    assert means["pulled"] > 1.0 > abs(means["free"]), means
