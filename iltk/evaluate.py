"""Policy evaluation through the control loop: success rate with a 95% interval."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from iltk.controllers import PolicyController
from iltk.envs import env_shapes, make_vector_env
from iltk.policies import Policy, PolicyRunner
from iltk.rollout import run_episodes


def check_policy_task(policy: Policy, task: str, env_kwargs: dict | None = None) -> None:
    """Raise ValueError when the task's observation or action size differs from the policy's."""
    state_dim, action_dim, _, _ = env_shapes(task, dict(env_kwargs or {}))
    cfg = policy.config
    if action_dim != cfg.action_dim or (
        state_dim is not None and cfg.state_dim and state_dim != cfg.state_dim
    ):
        raise ValueError(
            f"{task} has observation dim {state_dim} and action dim {action_dim}, but the policy "
            f"was trained on {cfg.state_dim} and {cfg.action_dim}"
        )


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for z = 1.96)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class EvalResult:
    task: str
    episodes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_return: float
    mean_length: float
    per_episode: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        lo, hi = self.ci95
        return (
            f"{self.task}: success {self.success_rate:.1%} (95% CI {lo:.1%}-{hi:.1%}) over "
            f"{self.episodes} episodes, mean return {self.mean_return:.2f}, "
            f"mean length {self.mean_length:.1f}"
        )


def evaluate_policy(
    policy: Policy,
    task: str,
    episodes: int,
    *,
    seed: int = 100_000,
    num_envs: int = 1,
    env_kwargs: dict | None = None,
    envs: gym.vector.VectorEnv | None = None,
    progress=None,
) -> EvalResult:
    """Run ``episodes`` seeded episodes of ``policy`` (episode k uses seed ``seed + k``).

    Pass ``envs`` to reuse a vector env across evaluations (training does).
    """
    if episodes < 1:
        raise ValueError(f"the number of evaluation episodes must be at least 1, got {episodes}")
    own = envs is None
    if own:
        envs = make_vector_env(task, num_envs, **(env_kwargs or {}))
    try:
        runner = PolicyRunner(policy, envs.num_envs)
        eps = run_episodes(
            envs,
            PolicyController(runner),
            episodes,
            seed=seed,
            record_states=False,
            progress=progress,
        )
    finally:
        if own:
            envs.close()
    successes = sum(e.success for e in eps)
    return EvalResult(
        task=task,
        episodes=len(eps),
        success_rate=successes / max(len(eps), 1),
        ci95=wilson_interval(successes, len(eps)),
        mean_return=float(np.mean([e.episode_return for e in eps])) if eps else 0.0,
        mean_length=float(np.mean([e.length for e in eps])) if eps else 0.0,
        per_episode=[
            {"seed": e.seed, "success": e.success, "return": e.episode_return, "length": e.length}
            for e in eps
        ],
    )


def policy_video(
    policy: Policy,
    task: str,
    path: str | Path,
    *,
    episodes: int = 2,
    seed: int = 100_000,
    env_kwargs: dict | None = None,
) -> list:
    """Render ``episodes`` episodes of the policy to an mp4."""
    from iltk.video import record_video

    return record_video(
        task,
        PolicyController(PolicyRunner(policy, 1)),
        path,
        episodes=episodes,
        seed=seed,
        env_kwargs=env_kwargs,
    )
