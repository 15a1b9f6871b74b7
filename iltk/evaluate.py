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


VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif")


def check_video_path(path: Path) -> None:
    """Refuse, before any episode runs, a video path that cannot be written."""
    from iltk.files import check_output

    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(
            f"{path}: --video needs a video file name ending in {', '.join(VIDEO_SUFFIXES)}"
        )
    check_output(Path(path), overwrite=True, what="--video")


def policy_for_task(
    checkpoint: Path,
    task: str | None,
    device: str = "cpu",
    chunk=None,
    threads: int = 1,
):
    """Load a checkpoint and the task it acts in: (policy, task, env_kwargs); ``chunk`` (a
    ``ChunkExecution``) changes how a chunked policy acts; it acts with ``threads`` torch
    threads on the CPU (one step at a time, one is fastest)."""
    import torch

    from iltk.policies import load_checkpoint, resolve_device, set_chunk_execution

    torch.set_num_threads(threads)
    policy, extra = load_checkpoint(checkpoint, resolve_device(device))
    if chunk is not None:
        try:
            set_chunk_execution(policy, **chunk.given())
        except ValueError as err:
            raise ValueError(f"{checkpoint}: --chunk.*: {err}") from None
    task = task or extra.get("task")
    if not task:
        raise ValueError(f"{checkpoint}: the checkpoint names no task; pass --task")
    env_kwargs = dict(extra.get("env_kwargs") or {}) if task == extra.get("task") else {}
    check_policy_task(policy, task, env_kwargs)
    return policy, task, env_kwargs


def evaluate_checkpoint(cfg, *, progress: bool = True) -> EvalResult:
    """`iltk eval` as a library call (``cfg``: an ``EvalConfig``): load the checkpoint,
    run the episodes, write the per-episode JSON (``cfg.results_path()``) and, with
    ``cfg.video``, render the first two episodes. Every path is checked before any
    episode runs."""
    import json

    from tqdm.auto import tqdm

    from iltk.files import atomic_write_text, check_output

    out = cfg.results_path()
    if cfg.video:
        check_video_path(cfg.video)
    policy, task, env_kwargs = policy_for_task(
        cfg.policy, cfg.task, cfg.device, cfg.chunk, cfg.threads
    )
    check_output(out, overwrite=True, what="--json")
    with tqdm(total=cfg.episodes, desc=f"eval {task}", unit="ep", disable=not progress) as bar:
        res = evaluate_policy(
            policy,
            task,
            cfg.episodes,
            seed=cfg.seed,
            num_envs=cfg.num_envs,
            env_kwargs=env_kwargs,
            progress=bar,
        )
    record = res.to_dict()
    if cfg.chunk.given():  # how the chunks were executed, where not as saved
        record["chunk_execution"] = cfg.chunk.given()
    atomic_write_text(out, json.dumps(record, indent=2))
    if cfg.video:
        policy_video(policy, task, cfg.video, seed=cfg.seed, env_kwargs=env_kwargs)
    return res
