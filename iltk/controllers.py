"""Controllers: who acts at each step of the control loop.

A controller maps the batched observation to a :class:`~iltk.rollout.ControlOutput`:
the executed actions, the training labels, and extra per-step fields. Sources are the
scripted expert, a policy runner, and a human device (``teleop``); the combinators below
wrap them: DAgger's beta-mixture, the HG-DAgger gate and DART noise.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from iltk.rollout import Controller, ControlOutput


class ExpertController:
    """The task's scripted expert acts and labels (it is queried in each env's own state)."""

    def reset(self, env_ids):
        pass

    def act(self, obs, info, envs: gym.vector.VectorEnv) -> ControlOutput:
        try:
            # (N, A): a discrete expert's action index becomes a (N, 1) column
            actions = np.stack(envs.call("expert_action")).astype(np.float32)
            actions = actions.reshape(len(actions), -1)
        except AttributeError as err:
            raise ValueError(
                "this environment has no scripted expert (only iltk tasks have one)"
            ) from err
        return ControlOutput(executed=actions, label=actions)


class PolicyController:
    """A policy runner (``reset`` / ``act(obs)``) acts; its own action is the label."""

    def __init__(self, runner: Any):
        self.runner = runner

    def reset(self, env_ids):
        self.runner.reset(env_ids)

    def act(self, obs, info, envs) -> ControlOutput:
        actions = np.asarray(self.runner.act(obs), dtype=np.float32)
        return ControlOutput(executed=actions, label=actions)


class DartNoise:
    """DART (Laskey et al. 2017): execute ``label + N(0, Sigma)``, record the clean label.

    Every episode draws its noise from its own stream, seeded by (``seed``, the episode's
    seed), so the same seed gives the same episodes whatever the number of envs.

    Args:
        inner: the supervisor (expert or human) controller.
        cov: a scalar standard deviation, a per-dimension std vector, or a full
            covariance matrix Sigma.
        seed: seed of the noise streams.
    """

    def __init__(self, inner: Controller, cov, seed: int = 0):
        self.inner = inner
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)  # envs whose episode has no seed
        self.streams: dict[int, np.random.Generator] = {}
        self.set_covariance(cov)

    def set_covariance(self, cov) -> None:
        cov = np.asarray(cov, dtype=np.float64)
        if not np.all(np.isfinite(cov)):
            raise ValueError(f"DART noise must be finite, got {cov.tolist()}")
        if cov.ndim < 2 and np.any(cov < 0):
            raise ValueError(f"DART noise std must be >= 0, got {cov.tolist()}")
        if cov.ndim == 0:
            self._chol = None
            self._std = float(cov)
        elif cov.ndim == 1:
            self._chol = np.diag(cov)
            self._std = None
        else:
            self._chol = np.linalg.cholesky(cov + 1e-12 * np.eye(cov.shape[0]))
            self._std = None

    def reset(self, env_ids):
        self.inner.reset(env_ids)
        for i in env_ids:
            self.streams.pop(int(i), None)

    def seed_episodes(self, env_ids, seeds) -> None:
        if hasattr(self.inner, "seed_episodes"):
            self.inner.seed_episodes(env_ids, seeds)
        for i, episode_seed in zip(env_ids, seeds):
            if episode_seed is not None:
                entropy = [self.seed & 0xFFFFFFFF, int(episode_seed) & 0xFFFFFFFF]
                self.streams[int(i)] = np.random.default_rng(np.random.SeedSequence(entropy))

    def act(self, obs, info, envs) -> ControlOutput:
        out = self.inner.act(obs, info, envs)
        label = out.label
        eps = np.stack(
            [
                self.streams.get(i, self.rng).standard_normal(label.shape[1:])
                for i in range(len(label))
            ]
        )
        noise = eps * self._std if self._chol is None else eps @ self._chol.T
        executed = np.clip(out.executed + noise, -1.0, 1.0).astype(np.float32)
        fields = {**out.fields, "noise": noise.astype(np.float32)}
        return ControlOutput(executed=executed, label=label, fields=fields)


class BetaMixture:
    """DAgger's mixture: per step, the supervisor acts with probability beta, else the policy.

    The label is always the supervisor's (Ross et al. 2011): the scripted expert's, or the
    person's at the device (``iltk correct --mode dagger``). The policy's action is
    recorded as ``policy_actions`` and who acted as ``expert_acted`` (also kept in
    ``last_choice`` for a display).
    """

    def __init__(self, expert: Controller, policy: Controller, beta: float, seed: int = 0):
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.expert, self.policy, self.beta = expert, policy, float(beta)
        self.rng = np.random.default_rng(seed)
        self.last_choice = np.zeros(0, dtype=bool)

    def reset(self, env_ids):
        self.expert.reset(env_ids)
        self.policy.reset(env_ids)

    def act(self, obs, info, envs) -> ControlOutput:
        exp = self.expert.act(obs, info, envs)
        pol = self.policy.act(obs, info, envs)
        use_expert = self.rng.random(exp.label.shape[0]) < self.beta
        self.last_choice = use_expert
        executed = np.where(use_expert[:, None], exp.executed, pol.executed).astype(np.float32)
        fields = {
            **pol.fields,
            **exp.fields,
            "policy_actions": pol.executed.astype(np.float32),
            "expert_acted": use_expert,
        }
        return ControlOutput(executed=executed, label=exp.label, fields=fields)


class DisagreementTrigger:
    """A simulated person's takeover decision (HG-DAgger's gate, automated).

    The disagreement ``d = |pi(s) - pi*(s)|_2 / sqrt(action_dim)`` (RMS per action
    dimension) above ``takeover`` hands control to the supervisor; it stays there until
    ``d`` has been below ``handback`` for ``hold`` consecutive steps.
    """

    def __init__(self, takeover: float = 0.3, handback: float = 0.1, hold: int = 5):
        if not 0 <= handback <= takeover:
            raise ValueError("need 0 <= handback <= takeover")
        self.takeover, self.handback, self.hold = float(takeover), float(handback), int(hold)
        self.in_control = np.zeros(0, dtype=bool)
        self.calm = np.zeros(0, dtype=np.int64)

    def reset(self, env_ids):
        if len(self.in_control):
            self.in_control[env_ids] = False
            self.calm[env_ids] = 0

    def __call__(self, sup: ControlOutput, pol: ControlOutput):
        n, a = sup.label.shape
        if len(self.in_control) != n:
            self.in_control = np.zeros(n, dtype=bool)
            self.calm = np.zeros(n, dtype=np.int64)
        d = np.linalg.norm(pol.executed - sup.label, axis=1) / np.sqrt(a)
        self.calm = np.where(d < self.handback, self.calm + 1, 0)
        start = ~self.in_control & (d > self.takeover)
        stop = self.in_control & (self.calm >= self.hold)
        self.in_control = (self.in_control | start) & ~stop
        return self.in_control.copy(), {"disagreement": d.astype(np.float32)}


class ButtonTrigger:
    """A person's takeover decision: the supervisor's output carries the button's state in
    the per-step field ``field`` (``teleop``'s human controller sets ``takeover``)."""

    def __init__(self, field: str = "takeover"):
        self.field = field

    def reset(self, env_ids):
        pass

    def __call__(self, sup: ControlOutput, pol: ControlOutput):
        held = sup.fields.pop(self.field, None)
        if held is None:
            raise ValueError(f"the supervisor reports no {self.field!r} field to gate on")
        return np.asarray(held, dtype=bool).reshape(-1), {}


class TakeoverGate:
    """HG-DAgger (Kelly et al. 2019): the policy acts; the supervisor takes over while
    ``trigger`` says so (a button held by a person, or :class:`DisagreementTrigger`).

    Steps under supervisor control are flagged ``intervention``; their label is the
    supervisor's action. The label of the other steps is the policy's own action (HG-DAgger
    trains on the interventions only). ``in_control`` holds the last decision per env.
    """

    def __init__(self, supervisor: Controller, policy: Controller, trigger):
        self.supervisor, self.policy, self.trigger = supervisor, policy, trigger
        self.in_control = np.zeros(0, dtype=bool)

    def reset(self, env_ids):
        self.supervisor.reset(env_ids)
        self.policy.reset(env_ids)
        self.trigger.reset(env_ids)

    def act(self, obs, info, envs) -> ControlOutput:
        sup = self.supervisor.act(obs, info, envs)
        pol = self.policy.act(obs, info, envs)
        in_control, extra = self.trigger(sup, pol)
        self.in_control = in_control
        executed = np.where(in_control[:, None], sup.executed, pol.executed).astype(np.float32)
        label = np.where(in_control[:, None], sup.label, pol.executed).astype(np.float32)
        fields = {
            **pol.fields,
            **sup.fields,
            "intervention": in_control.copy(),
            "policy_actions": pol.executed.astype(np.float32),
            **extra,
        }
        return ControlOutput(executed=executed, label=label, fields=fields)


def HGDaggerGate(  # noqa: N802  (a controller built like a class)
    expert: Controller,
    policy: Controller,
    takeover: float = 0.3,
    handback: float = 0.1,
    hold: int = 5,
) -> TakeoverGate:
    """HG-DAgger with a simulated person: :class:`TakeoverGate` on a
    :class:`DisagreementTrigger` (see there for the rule)."""
    return TakeoverGate(expert, policy, DisagreementTrigger(takeover, handback, hold))
