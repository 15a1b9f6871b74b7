"""Rendering episodes to mp4 (headless, through the one control loop)."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from iltk.envs import make_vector_env
from iltk.rollout import Controller, StepEvent, run_episodes


def write_video(path: str | Path, frames: list[np.ndarray], fps: float) -> Path:
    """Write RGB frames to an H.264 mp4 (imageio-ffmpeg)."""
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8) as w:
        for frame in frames:
            w.append_data(np.asarray(frame))
    return path


def record_video(
    task_id: str,
    controller: Controller,
    path: str | Path,
    *,
    episodes: int = 1,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    env_kwargs: dict | None = None,
):
    """Run ``episodes`` episodes with ``controller`` and write what the camera saw.

    Returns the list of episodes run (so callers can report their success).
    """
    size = (
        {"render_width": width, "render_height": height}
        if task_id.startswith("iltk/")
        else {"width": width, "height": height}
    )
    envs = make_vector_env(
        task_id, 1, asynchronous=False, render_mode="rgb_array", **{**size, **(env_kwargs or {})}
    )
    frames: list[np.ndarray] = []

    def grab(event: StepEvent):
        frames.append(envs.envs[0].render())
        return None

    try:
        eps = run_episodes(envs, controller, episodes, seed=seed, after_step=grab)
        fps = envs.envs[0].metadata.get("render_fps", 20)
    finally:
        envs.close()
    write_video(path, frames, fps)
    return eps
