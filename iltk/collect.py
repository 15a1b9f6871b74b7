"""Scripted collection: the task's expert through the control loop into an episode file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from iltk.controllers import DartNoise, ExpertController
from iltk.data import DemoWriter, make_env_args
from iltk.envs import make_env, make_expert, make_vector_env
from iltk.files import check_output
from iltk.rollout import Episode, run_episodes


@dataclass
class CollectResult:
    path: Path
    saved: int
    attempted: int
    successes: int
    mean_return: float = float("nan")


def collect_demos(
    task: str,
    out: str | Path,
    episodes: int,
    *,
    num_envs: int = 1,
    seed: int = 0,
    success_only: bool = False,
    dart_noise: float = 0.0,
    env_kwargs: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
    max_attempts_factor: float = 3.0,
) -> CollectResult:
    """Run the scripted expert and save ``episodes`` demos to ``out``.

    With ``success_only`` only successful episodes are saved and collection continues
    (up to ``max_attempts_factor * episodes`` attempts) until ``episodes`` are saved.
    With ``dart_noise`` > 0 the executed action is the expert's plus N(0, sigma^2) noise and
    the recorded label (``actions``) is the clean expert action.
    """
    env_kwargs = dict(env_kwargs or {})
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if not (math.isfinite(dart_noise) and dart_noise >= 0):
        raise ValueError(f"dart_noise must be a finite std >= 0, got {dart_noise}")
    check_output(out, append=True, what="--out")
    probe = make_env(task, **env_kwargs)
    try:
        make_expert(probe)  # fails, before any file is touched, for envs without an expert
        base = probe.unwrapped  # MuJoCo tasks store their model; tabular MDPs have none
        model_xml = base.model_xml() if hasattr(base, "model_xml") else ""
        control_freq = getattr(base, "control_freq", None)
    finally:
        probe.close()
    # the writer (and its lock) before the envs: a second writer is refused before any work
    writer = DemoWriter(
        out,
        make_env_args(task, env_kwargs, control_freq),
        model_file=model_xml,
        overwrite=overwrite,
    )
    try:
        envs = make_vector_env(task, num_envs, **env_kwargs)
    except BaseException:
        writer.close()
        raise
    controller = ExpertController()
    if dart_noise > 0:
        controller = DartNoise(controller, dart_noise, seed=seed)
    source = "dart" if dart_noise > 0 else "scripted"
    saved = attempted = successes = 0
    returns: list[float] = []
    bar = tqdm(total=episodes, desc=f"collect {task}", unit="ep", disable=not progress)

    def on_episode(ep: Episode):
        nonlocal saved, successes
        successes += ep.success
        returns.append(ep.episode_return)
        if success_only and not ep.success:
            return
        if saved >= episodes:
            return
        writer.check()  # a failed save (full disk) stops collection at once
        writer.save(ep, source=source, attrs={"dart_noise": dart_noise})
        saved += 1
        bar.update(1)

    try:
        next_seed = seed
        max_attempts = int(max_attempts_factor * episodes) if success_only else episodes
        while saved < episodes and attempted < max_attempts:
            todo = min(episodes - saved, max_attempts - attempted)
            run_episodes(envs, controller, todo, seed=next_seed, on_episode=on_episode)
            attempted += todo
            next_seed += todo
        writer.flush()
    finally:
        bar.close()
        envs.close()
        writer.close()
    mean_return = float(sum(returns) / len(returns)) if returns else float("nan")
    return CollectResult(Path(out), saved, attempted, successes, mean_return)
