"""Rendering episodes to mp4 (headless, through the one control loop)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from iltk.envs import make_vector_env
from iltk.rollout import Controller, StepEvent, run_episodes


class VideoWriter:
    """RGB frames streamed to an H.264 mp4 (imageio-ffmpeg) as they come, so a long video
    never sits in memory. The file is written beside ``path`` and renamed over it when
    closed: an interrupted render leaves no half video (and destroys no older one).
    """

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}{self.path.suffix}")
        self.writer = imageio.get_writer(
            self.tmp, fps=fps, codec="libx264", quality=7, macro_block_size=8
        )
        self.frames = 0

    def append(self, frame: np.ndarray) -> None:
        self.writer.append_data(np.asarray(frame))
        self.frames += 1

    def close(self) -> Path:
        self.writer.close()
        if not self.frames:
            self.abort()
            raise ValueError(f"no frames to write to {self.path}")
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Write RGB frames (a list or any iterable, consumed as it goes) to an H.264 mp4."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.append(frame)
    return writer.path


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
    try:
        with VideoWriter(path, envs.envs[0].metadata.get("render_fps", 20)) as writer:

            def grab(event: StepEvent):
                writer.append(envs.envs[0].render())
                return None

            eps = run_episodes(envs, controller, episodes, seed=seed, after_step=grab)
    finally:
        envs.close()
    return eps
