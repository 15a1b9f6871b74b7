"""THE control loop of iltk.

Scripted collection, teleop recording, DAgger / HG-DAgger / DART collection, evaluation and
the viewer all run :func:`run_episodes`; they differ only in the controller they plug in
(:mod:`iltk.controllers`), whether steps are paced in real time (:class:`RatePacer`), and the
hooks they pass (a teleop window draws and reads keys in ``after_step``).

The loop drives a gymnasium vector env with autoreset disabled, so each sub-env is reset
exactly when its episode ends and every episode gets its own seed ``seed + episode_index``:
the same seed gives the same episodes whatever the number of envs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

# Episode-level commands a hook can return for an env: save (and reset), discard (and
# reset), reset (same as discard, kept apart for the HUD), quit (stop the whole loop).
COMMANDS = ("save", "discard", "reset", "quit")


@dataclass
class ControlOutput:
    """What a controller decides for one step of all N envs.

    Attributes:
        executed: (N, A) actions applied to the sim.
        label: (N, A) the training label (the supervisor's intended action).
        fields: further per-step arrays with a leading N axis, recorded as-is
            (e.g. ``intervention``, ``policy_actions``, ``noise``).
    """

    executed: np.ndarray
    label: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)


class Controller(Protocol):
    """Maps the current observations to executed actions and labels (contract 3)."""

    def reset(self, env_ids: np.ndarray) -> None:
        """Episodes start in the envs ``env_ids``: drop their per-episode state.

        A controller that draws random numbers may also define ``seed_episodes(env_ids,
        seeds)``: the loop calls it after ``reset`` with each new episode's seed, so its
        draws depend on the episode, not on how episodes were spread over the envs.
        """

    def act(self, obs: Any, info: dict[str, Any], envs: gym.vector.VectorEnv) -> ControlOutput:
        """Decide the actions for the current step of every env."""


@dataclass
class Episode:
    """One finished episode, in the layout of the episode format (contract 1)."""

    obs: dict[str, np.ndarray]
    next_obs: dict[str, np.ndarray]
    actions: np.ndarray
    actions_executed: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    states: np.ndarray | None
    fields: dict[str, np.ndarray]
    success: bool
    seed: int
    index: int
    terminated: bool
    truncated: bool
    outcome: str = "save"
    partial: bool = False

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())


@dataclass
class StepEvent:
    """What hooks see after each step."""

    step: int
    obs: Any
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, Any]
    control: ControlOutput
    episode_steps: np.ndarray
    episodes_done: int
    late_s: float


class RatePacer:
    """Holds a loop to a fixed rate and counts missed deadlines.

    Deadlines are absolute (``t0 + k / hz``) so that jitter does not accumulate; after a
    miss the schedule restarts from now rather than bursting to catch up.
    """

    def __init__(self, hz: float):
        if hz <= 0:
            raise ValueError(f"control rate must be positive, got {hz}")
        self.period = 1.0 / hz
        self.next_deadline: float | None = None
        self.steps = 0
        self.missed = 0
        self.late: list[float] = []
        self.last_late = 0.0

    def wait(self) -> float:
        """Sleep until the next deadline; returns how late (s) the loop was, 0 if on time."""
        now = time.perf_counter()
        if self.next_deadline is None:
            self.next_deadline = now + self.period
            self.steps += 1
            return 0.0
        lateness = now - self.next_deadline
        self.steps += 1
        if lateness > 0:
            self.missed += 1
            self.late.append(lateness)
            self.next_deadline = now + self.period
            self.last_late = lateness
            return lateness
        time.sleep(-lateness)
        self.next_deadline += self.period
        self.last_late = 0.0
        return 0.0

    def restart(self) -> None:
        self.next_deadline = None

    @property
    def missed_fraction(self) -> float:
        return self.missed / max(self.steps, 1)


def obs_to_dict(obs: Any) -> dict[str, np.ndarray]:
    """Name the observation keys of a batched observation as the episode format does."""
    if isinstance(obs, dict):
        return {k: np.asarray(v) for k, v in obs.items()}
    obs = np.asarray(obs)
    key = "pixels" if obs.dtype == np.uint8 and obs.ndim == 4 else "state"
    return {key: obs}


def env_supports_state(envs: gym.vector.VectorEnv) -> bool:
    try:
        envs.call("get_state")
        return True
    except AttributeError:
        return False


class _EpisodeBuffer:
    def __init__(self):
        self.steps: list[dict[str, Any]] = []

    def clear(self):
        self.steps = []


def _stack(steps: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.stack([s[key] for s in steps])


def run_episodes(
    envs: gym.vector.VectorEnv,
    controller: Controller,
    num_episodes: int,
    *,
    seed: int = 0,
    on_episode: Callable[[Episode], None] | None = None,
    after_step: Callable[[StepEvent], dict[int, str] | None] | None = None,
    pacer: RatePacer | None = None,
    record_states: bool = True,
    keep_partial: bool = False,
    progress: Any = None,
) -> list[Episode]:
    """Run ``num_episodes`` episodes (across all sub-envs) and return them.

    Args:
        envs: a vector env made with ``autoreset_mode=DISABLED`` (see ``make_vector_env``).
        controller: who acts (expert, policy, human, and their combinators).
        num_episodes: episodes to finish (saved or discarded ones both count; a hook's
            "quit" ends the loop earlier). ``0`` runs until a hook says "quit".
        seed: episode ``k`` is reset with seed ``seed + k``.
        on_episode: called with every finished episode (a recorder saves it here).
        after_step: called after every step; may return ``{env_index: command}`` with a
            command from :data:`COMMANDS`.
        pacer: real-time pacing (teleop); ``None`` runs as fast as possible.
        record_states: record the full sim state each step (needed for exact replay).
        keep_partial: on quit or Ctrl-C, hand unfinished episodes to ``on_episode``
            flagged ``partial`` instead of dropping them.
        progress: an object with ``update(n)`` (a tqdm bar), advanced per finished episode.
    """
    n = envs.num_envs
    record_states = record_states and env_supports_state(envs)
    buffers = [_EpisodeBuffer() for _ in range(n)]
    episode_of = np.full(n, -1)  # the episode index each env is running, -1 idle
    started = 0
    finished: list[Episode] = []
    step = 0

    def start(mask: np.ndarray):
        nonlocal started
        seeds = []
        for i in range(n):
            if mask[i]:
                episode_of[i] = started
                seeds.append(seed + started)
                started += 1
            else:
                seeds.append(None)
        obs, info = envs.reset(seed=seeds, options={"reset_mask": mask})
        ids = np.flatnonzero(mask)
        controller.reset(ids)
        if hasattr(controller, "seed_episodes"):
            controller.seed_episodes(ids, [seeds[i] for i in ids])
        for i in np.flatnonzero(mask):
            buffers[i].clear()
        return obs, info

    def finish(i: int, outcome: str, terminated=False, truncated=False, partial=False):
        steps = buffers[i].steps
        if not steps:
            return
        keys = steps[0]["obs"].keys()
        ep = Episode(
            obs={k: np.stack([s["obs"][k] for s in steps]) for k in keys},
            next_obs={k: np.stack([s["next_obs"][k] for s in steps]) for k in keys},
            actions=_stack(steps, "label").astype(np.float32),
            actions_executed=_stack(steps, "executed").astype(np.float32),
            rewards=_stack(steps, "reward").astype(np.float32),
            dones=_stack(steps, "done").astype(np.uint8),
            states=_stack(steps, "state") if record_states else None,
            fields={k: np.stack([s["fields"][k] for s in steps]) for k in steps[0]["fields"]},
            success=bool(steps[-1]["success"]),
            seed=int(seed + episode_of[i]),
            index=int(episode_of[i]),
            terminated=bool(terminated),
            truncated=bool(truncated),
            outcome=outcome,
            partial=partial,
        )
        finished.append(ep)
        if on_episode is not None:
            on_episode(ep)
        if progress is not None:
            progress.update(1)
        buffers[i].clear()

    target = num_episodes if num_episodes > 0 else np.inf
    obs, info = start(np.ones(n, dtype=bool))
    states = np.stack(envs.call("get_state")) if record_states else None
    quit_requested = False
    try:
        while len(finished) < target and not quit_requested:
            late = pacer.wait() if pacer is not None else 0.0
            control = controller.act(obs, info, envs)
            next_obs, rewards, terminated, truncated, info = envs.step(control.executed)
            step += 1
            obs_d, next_d = obs_to_dict(obs), obs_to_dict(next_obs)
            success = np.asarray(info.get("success", np.zeros(n, dtype=bool)), dtype=bool)
            for i in range(n):
                if episode_of[i] < 0:
                    continue
                buffers[i].steps.append(
                    {
                        "obs": {k: v[i] for k, v in obs_d.items()},
                        "next_obs": {k: v[i] for k, v in next_d.items()},
                        "label": control.label[i],
                        "executed": control.executed[i],
                        "reward": rewards[i],
                        "done": bool(terminated[i] or truncated[i]),
                        "state": states[i] if states is not None else None,
                        "fields": {k: v[i] for k, v in control.fields.items()},
                        "success": success[i],
                    }
                )
            commands: dict[int, str] = {}
            if after_step is not None:
                event = StepEvent(
                    step=step,
                    obs=next_obs,
                    rewards=rewards,
                    terminated=terminated,
                    truncated=truncated,
                    info=info,
                    control=control,
                    episode_steps=np.array([len(b.steps) for b in buffers]),
                    episodes_done=len(finished),
                    late_s=late,
                )
                commands = after_step(event) or {}
                for cmd in commands.values():
                    if cmd not in COMMANDS:
                        raise ValueError(f"unknown loop command {cmd!r}; valid: {COMMANDS}")
            if "quit" in commands.values():
                quit_requested = True
                for i, cmd in commands.items():
                    if cmd == "save":
                        finish(i, "save")
                break
            done = np.zeros(n, dtype=bool)
            for i in range(n):
                cmd = commands.get(i)
                if cmd is not None:
                    finish(i, cmd, terminated[i], truncated[i])
                    done[i] = True
                elif terminated[i] or truncated[i]:
                    if episode_of[i] >= 0:
                        finish(i, "save", terminated[i], truncated[i])
                    done[i] = True
                if len(finished) >= target:
                    break
            if len(finished) >= target:
                break
            if done.any():
                # envs whose next episode would overshoot the target still reset (a vector
                # env steps all sub-envs together) but record nothing
                reset_obs, reset_info = start(done)
                for i in np.flatnonzero(done):
                    if episode_of[i] >= target:
                        episode_of[i] = -1
                obs = _merge_obs(next_obs, reset_obs, done)
                del reset_info  # controllers read per-step info; reset info carries no labels
                if pacer is not None and any(c is not None for c in commands.values()):
                    pacer.restart()
            else:
                obs = next_obs
            if record_states:
                states = np.stack(envs.call("get_state"))
    except KeyboardInterrupt:
        quit_requested = True
        raise
    finally:
        if quit_requested and keep_partial:
            for i in range(n):
                if episode_of[i] >= 0 and buffers[i].steps:
                    finish(i, "save", partial=True)
    return sorted(finished, key=lambda ep: ep.index)


def _merge_obs(next_obs, reset_obs, mask):
    if isinstance(next_obs, dict):
        return {k: _merge_obs(next_obs[k], reset_obs[k], mask) for k in next_obs}
    out = np.array(next_obs, copy=True)
    out[mask] = np.asarray(reset_obs)[mask]
    return out
