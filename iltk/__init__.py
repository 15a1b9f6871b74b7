"""iltk: an imitation-learning toolkit for robot manipulation in MuJoCo."""

from iltk.envs import TASK_IDS, make_env, make_expert, register_tasks

__version__ = "0.1.0"

register_tasks()

__all__ = ["TASK_IDS", "__version__", "make_env", "make_expert"]
