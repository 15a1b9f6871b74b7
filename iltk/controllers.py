"""Controllers: who acts at each step of the control loop (contract 3 of DESIGN.md).

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
            actions = np.stack(envs.call("expert_action")).astype(np.float32)
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

    Args:
        inner: the supervisor (expert or human) controller.
        cov: a scalar standard deviation, a per-dimension std vector, or a full
            covariance matrix Sigma.
        seed: seed of the noise generator.
    """

    def __init__(self, inner: Controller, cov, seed: int = 0):
        self.inner = inner
        self.rng = np.random.default_rng(seed)
        self.set_covariance(cov)

    def set_covariance(self, cov) -> None:
        cov = np.asarray(cov, dtype=np.float64)
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

    def act(self, obs, info, envs) -> ControlOutput:
        out = self.inner.act(obs, info, envs)
        label = out.label
        eps = self.rng.standard_normal(label.shape)
        noise = eps * self._std if self._chol is None else eps @ self._chol.T
        executed = np.clip(out.executed + noise, -1.0, 1.0).astype(np.float32)
        fields = {**out.fields, "noise": noise.astype(np.float32)}
        return ControlOutput(executed=executed, label=label, fields=fields)


class BetaMixture:
    """DAgger's mixture: per step, the expert acts with probability beta, else the policy.

    The label is always the expert's action (Ross et al. 2011); the policy's action is
    recorded as ``policy_actions`` and who acted as ``expert_acted``.
    """

    def __init__(self, expert: Controller, policy: Controller, beta: float, seed: int = 0):
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.expert, self.policy, self.beta = expert, policy, float(beta)
        self.rng = np.random.default_rng(seed)

    def reset(self, env_ids):
        self.expert.reset(env_ids)
        self.policy.reset(env_ids)

    def act(self, obs, info, envs) -> ControlOutput:
        exp = self.expert.act(obs, info, envs)
        pol = self.policy.act(obs, info, envs)
        use_expert = self.rng.random(exp.label.shape[0]) < self.beta
        executed = np.where(use_expert[:, None], exp.executed, pol.executed).astype(np.float32)
        fields = {
            **pol.fields,
            **exp.fields,
            "policy_actions": pol.executed.astype(np.float32),
            "expert_acted": use_expert,
        }
        return ControlOutput(executed=executed, label=exp.label, fields=fields)
