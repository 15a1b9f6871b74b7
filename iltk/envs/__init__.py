"""MuJoCo manipulation tasks, their scripted experts, and the task registry.

Tasks register with gymnasium as ``iltk/<Name>-v<N>`` on ``import iltk`` (a new version
where the observation changed, as gymnasium's own tasks do; the old one stays). Any other
gymnasium id (``Reacher-v5``, ...) is accepted wherever a task id is.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from iltk.envs.base import MujocoTaskEnv

TASKS: dict[str, dict[str, Any]] = {
    "iltk/PointMaze-v0": {
        "entry_point": "iltk.envs.point_maze:PointMazeEnv",
        "max_episode_steps": 150,
    },
    "iltk/Reach-v0": {"entry_point": "iltk.envs.reach:ReachEnv", "max_episode_steps": 100},
    "iltk/Reach-v1": {
        "entry_point": "iltk.envs.reach:ReachRelativeEnv",
        "max_episode_steps": 100,
    },
    "iltk/Push-v0": {"entry_point": "iltk.envs.push:PushEnv", "max_episode_steps": 200},
    "iltk/Lift-v0": {"entry_point": "iltk.envs.lift:LiftEnv", "max_episode_steps": 150},
    "iltk/PandaLift-v0": {
        "entry_point": "iltk.envs.panda_lift:PandaLiftEnv",
        "max_episode_steps": 150,
    },
    "iltk/PandaStack-v0": {
        "entry_point": "iltk.envs.panda_stack:PandaStackEnv",
        "max_episode_steps": 250,
    },
    "iltk/PandaPickPlace-v0": {
        "entry_point": "iltk.envs.panda_pick_place:PandaPickPlaceEnv",
        "max_episode_steps": 250,
    },
    "iltk/PandaNutAssembly-v0": {
        "entry_point": "iltk.envs.panda_nut_assembly:PandaNutAssemblyEnv",
        "max_episode_steps": 300,
    },
}
TASK_IDS = tuple(TASKS)
PANDA_TASK_IDS = tuple(t for t in TASK_IDS if t.startswith("iltk/Panda"))
# tabular MDPs for IRL (a state index observed, an action index taken; soft-optimal experts)
TABULAR_TASKS: dict[str, dict[str, Any]] = {
    "iltk/ObjectWorld-v0": {
        "entry_point": "iltk.envs.tabular:TabularEnv",
        "kwargs": {"world": "object"},
    },
    "iltk/RandomMDP-v0": {
        "entry_point": "iltk.envs.tabular:TabularEnv",
        "kwargs": {"world": "random"},
    },
}


class UnknownTaskError(ValueError):
    """An environment id that neither iltk nor gymnasium knows."""


def register_tasks() -> None:
    for task_id, spec in {**TASKS, **TABULAR_TASKS}.items():
        if task_id not in gym.registry:
            gym.register(id=task_id, **spec)


def make_env(task_id: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` with errors that say what is valid.

    Raises:
        UnknownTaskError: ``task_id`` is not registered (the message lists the iltk tasks).
        ValueError: a keyword argument the task does not take.
    """
    register_tasks()
    if task_id not in gym.registry:
        close = [t for t in gym.registry if task_id.lower().split("/")[-1][:4] in t.lower()][:5]
        hint = f" Did you mean one of {close}?" if close else ""
        raise UnknownTaskError(
            f"unknown task id {task_id!r}. iltk tasks: {', '.join(TASK_IDS)}; any other "
            f"registered gymnasium id (e.g. 'Reacher-v5') also works.{hint}"
        )
    # The passive checker re-validates every step's output; iltk's tests run the full
    # check_env on every task instead, so the per-step cost is not paid in training.
    kwargs.setdefault("disable_env_checker", True)
    try:
        with warnings.catch_warnings():
            if task_id in TASKS:
                # gymnasium calls a version "out of date" once a newer one is registered;
                # iltk's older versions stay first-class tasks (their files, their runs)
                warnings.filterwarnings(
                    "ignore", ".*The environment iltk/.* is out of date", DeprecationWarning
                )
            return gym.make(task_id, **kwargs)
    except TypeError as err:
        accepted = ""
        if task_id in TASKS:
            import inspect

            from gymnasium.envs.registration import load_env_creator

            params = inspect.signature(load_env_creator(TASKS[task_id]["entry_point"])).parameters
            accepted = f" {task_id} accepts: {', '.join(params)}."
        raise ValueError(
            f"bad keyword arguments for {task_id!r} {sorted(kwargs)}: {err}.{accepted}"
        ) from err


def make_vector_env(
    task_id: str, num_envs: int = 1, *, asynchronous: bool | None = None, **kwargs
) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies with autoreset disabled (the control loop resets).

    ``asynchronous`` defaults to subprocesses when ``num_envs > 1``.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, got {num_envs}")
    make_env(task_id, **kwargs).close()  # fail early, in this process, on a bad id or kwargs
    fns = [lambda: make_env(task_id, **kwargs) for _ in range(num_envs)]
    mode = gym.vector.AutoresetMode.DISABLED
    if asynchronous if asynchronous is not None else num_envs > 1:
        return _AsyncVectorEnv(fns, autoreset_mode=mode, worker=_quiet_worker)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)


class _AsyncVectorEnv(gym.vector.AsyncVectorEnv):
    """gymnasium's AsyncVectorEnv, closed safely after an interruption."""

    def close_extras(self, timeout: float | None = None, terminate: bool = False) -> None:
        from gymnasium.vector.async_vector_env import AsyncState

        if self._state != AsyncState.DEFAULT:
            # interrupted (Ctrl-C, an error) between a command and its answers: part of them
            # may have been read already, and waiting for the rest would hang; the workers
            # are this process's own, so they are stopped instead
            self._state = AsyncState.DEFAULT
            terminate = True
        super().close_extras(timeout, terminate)


def _quiet_worker(*args) -> None:
    """gymnasium's subprocess worker, quiet when its parent goes: a Ctrl-C is the parent's
    to handle (it closes the envs), so the worker ignores SIGINT; a parent killed leaves the
    worker a closed pipe, on which gymnasium's worker would print a traceback of its own
    EOFError / BrokenPipeError, and this one ends in silence."""
    import signal

    from gymnasium.vector.async_vector_env import _async_worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _async_worker(*args)
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass


def env_shapes(task: str, env_kwargs: dict) -> tuple[int | None, int, list[float], list[float]]:
    """(state dim or None, action dim, action low, action high) of a task."""
    env = make_env(task, **env_kwargs)
    try:
        space = env.observation_space
        if hasattr(space, "spaces"):
            state = space.spaces.get("state")
            state_dim = int(np.prod(state.shape)) if state is not None else None
        else:
            state_dim = int(np.prod(space.shape)) if space.dtype != np.uint8 else None
        act = env.action_space
        return state_dim, int(np.prod(act.shape)), act.low.tolist(), act.high.tolist()
    finally:
        env.close()


def is_iltk_task(env: gym.Env) -> bool:
    return isinstance(env.unwrapped, MujocoTaskEnv)


def require_iltk_task(task: str, why: str, **env_kwargs) -> None:
    """Raise ValueError (``UnknownTaskError`` for an unknown id) unless ``task`` is one of
    iltk's MuJoCo tasks; ``why`` says what needs one. For checks before any work starts."""
    env = make_env(task, **env_kwargs)
    try:
        if not is_iltk_task(env):
            raise ValueError(f"{task}: not an iltk task; {why} ({', '.join(TASK_IDS)})")
    finally:
        env.close()


class ScriptedExpert:
    """The task's closed-loop expert: its action depends only on the current sim state.

    ``expert(env)`` or ``expert()`` returns the action for the env's current state, whatever
    path led there, which is what DAgger labelling needs.
    """

    def __init__(self, env: gym.Env):
        if not hasattr(env.unwrapped, "expert_action"):
            raise ValueError(
                f"no scripted expert for {env.spec.id if env.spec else type(env).__name__!r}: "
                f"scripted experts exist for the iltk tasks {', '.join(TASK_IDS)} and the "
                f"tabular ones {', '.join(TABULAR_TASKS)}"
            )
        self.env = env.unwrapped

    def __call__(self) -> np.ndarray:
        return np.asarray(self.env.expert_action(), dtype=np.float32)


def make_expert(env: gym.Env) -> ScriptedExpert:
    """The scripted expert of an iltk task env (raises ValueError for other envs)."""
    return ScriptedExpert(env)


__all__ = [
    "PANDA_TASK_IDS",
    "TABULAR_TASKS",
    "TASKS",
    "TASK_IDS",
    "MujocoTaskEnv",
    "ScriptedExpert",
    "UnknownTaskError",
    "env_shapes",
    "is_iltk_task",
    "require_iltk_task",
    "make_env",
    "make_expert",
    "make_vector_env",
    "register_tasks",
]
