"""iltk: an imitation-learning toolkit for robot manipulation in MuJoCo."""

import os as _os

# Headless by default: without a display, MuJoCo renders offscreen through EGL. This must
# run before mujoco is first imported; an explicit MUJOCO_GL always wins.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "egl"
    _os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from iltk.envs import TASK_IDS, make_env, make_expert, register_tasks

__version__ = "0.1.0"

register_tasks()

__all__ = ["TASK_IDS", "__version__", "make_env", "make_expert"]
