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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from iltk import interrupts

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
        self.last_success = False

    def clear(self):
        self.steps = []
        self.last_success = False


@dataclass
class EpisodeStats:
    """A finished episode of a :class:`Rollout` that does not record steps."""

    seed: int
    index: int
    length: int
    episode_return: float
    success: bool
    terminated: bool
    truncated: bool
    outcome: str = "save"
    partial: bool = False


def _stack(steps: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.stack([s[key] for s in steps])


@dataclass
class Transition:
    """What one vector step did, for learners that consume steps (PPO), not episodes.

    Attributes:
        obs: the observations the controller acted on.
        control: its decision (executed actions, labels, fields).
        rewards, terminated, truncated, info: what the envs returned.
        final_obs: the true next observation of every env, before any reset: where an
            episode was truncated, the value of this observation bootstraps the return.
        next_obs: what the controller sees next (reset observations where an episode ended).
        done: envs whose episode ended at this step (by the env, or by a hook's command).
        episode_index: the episode each env was running at this step (-1: idle).
    """

    obs: Any
    control: ControlOutput
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, Any]
    final_obs: Any
    next_obs: Any
    done: np.ndarray
    episode_index: np.ndarray


class Rollout:
    """THE control loop, as an object whose state persists across calls.

    It holds the current observation of every env, the episode each env is running and the
    steps recorded so far, so an episode can span calls: :meth:`step` advances every env by
    one control step (PPO collects a fixed number of steps per env this way), :meth:`run`
    until some number of episodes have finished (collection, evaluation, teleop).
    :func:`run_episodes` is a fresh Rollout's ``run``.

    Episode ``k`` (in the order episodes start) is reset with seed ``seed + k``, whatever
    the number of envs and however the calls are split.

    Args:
        envs: a vector env made with ``autoreset_mode=DISABLED`` (see ``make_vector_env``).
        controller: who acts (expert, policy, human, and their combinators).
        seed: episode ``k`` is reset with seed ``seed + k``.
        seeds: instead, episode ``k`` is reset with ``seeds[k % len(seeds)]`` (IRL's policy
            player replays the demonstrations' starts this way).
        on_episode: called with every finished episode (a recorder saves it here).
        after_step: called after every step; may return ``{env_index: command}`` with a
            command from :data:`COMMANDS`.
        pacer: real-time pacing (teleop); ``None`` runs as fast as possible.
        record_states: record the full sim state each step (needed for exact replay).
        record: keep every step to build :class:`Episode` objects (off for learners that
            only consume :class:`Transition` s: finished episodes then carry no arrays,
            only their return, length and success).
        progress: an object with ``update(n)`` (a tqdm bar), advanced per finished episode.
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        controller: Controller,
        *,
        seed: int = 0,
        seeds: Sequence[int] | None = None,
        on_episode: Callable[[Episode], None] | None = None,
        after_step: Callable[[StepEvent], dict[int, str] | None] | None = None,
        pacer: RatePacer | None = None,
        record_states: bool = True,
        record: bool = True,
        progress: Any = None,
    ):
        self.envs, self.controller, self.seed = envs, controller, int(seed)
        self.seeds = [int(s) for s in seeds] if seeds is not None else None
        if self.seeds is not None and not self.seeds:
            raise ValueError("seeds must hold at least one seed")
        self.on_episode, self.after_step, self.pacer = on_episode, after_step, pacer
        self.progress = progress
        self.n = envs.num_envs
        self.record = record
        self.record_states = record and record_states and env_supports_state(envs)
        self.buffers = [_EpisodeBuffer() for _ in range(self.n)]
        self.returns = np.zeros(self.n)
        self.lengths = np.zeros(self.n, dtype=np.int64)
        self.episode_of = np.full(self.n, -1)  # the episode each env runs, -1 idle
        self.started = 0  # episodes started so far (the next one's index)
        self.finished: list[Episode] = []  # finished during the current run() call
        self.episodes_done = 0  # finished over the rollout's life
        self.steps_done = 0
        self.limit: float = np.inf  # episodes with an index at or past it are not started
        self.obs: Any = None
        self.info: dict[str, Any] = {}
        self.states: np.ndarray | None = None
        self.quit_requested = False

    # ----------------------------------------------------------------- episodes
    def seed_of(self, index: int) -> int:
        """The reset seed of episode ``index``."""
        if self.seeds is not None:
            return self.seeds[index % len(self.seeds)]
        return self.seed + index

    def _start(self, mask: np.ndarray):
        seeds = []
        for i in range(self.n):
            if mask[i] and self.started < self.limit:
                self.episode_of[i] = self.started
                seeds.append(self.seed_of(self.started))
                self.started += 1
            elif mask[i]:
                # the vector env steps all sub-envs together: this one resets (seedless,
                # so no episode seed is used up) but records nothing
                self.episode_of[i] = -1
                seeds.append(None)
            else:
                seeds.append(None)
        obs, info = self.envs.reset(seed=seeds, options={"reset_mask": mask})
        ids = np.flatnonzero(mask)
        self.controller.reset(ids)
        if hasattr(self.controller, "seed_episodes"):
            self.controller.seed_episodes(ids, [seeds[i] for i in ids])
        for i in ids:
            self.buffers[i].clear()
            self.returns[i] = 0.0
            self.lengths[i] = 0
        return obs, info

    def _ensure_started(self) -> None:
        """Reset every env on first use, and start idle envs when episodes may start."""
        if self.obs is None:
            self.obs, self.info = self._start(np.ones(self.n, dtype=bool))
        else:
            idle = self.episode_of < 0
            if idle.any() and self.started < self.limit:
                reset_obs, _ = self._start(idle)
                self.obs = _merge_obs(self.obs, reset_obs, idle)
            else:
                return
        if self.record_states:
            self.states = np.stack(self.envs.call("get_state"))

    def _finish(self, i: int, outcome: str, terminated=False, truncated=False, partial=False):
        if self.episode_of[i] < 0 or self.lengths[i] == 0:
            return
        index = int(self.episode_of[i])
        steps = self.buffers[i].steps
        if self.record:
            keys = steps[0]["obs"].keys()
            ep = Episode(
                obs={k: np.stack([s["obs"][k] for s in steps]) for k in keys},
                next_obs={k: np.stack([s["next_obs"][k] for s in steps]) for k in keys},
                actions=_stack(steps, "label").astype(np.float32),
                actions_executed=_stack(steps, "executed").astype(np.float32),
                rewards=_stack(steps, "reward").astype(np.float32),
                dones=_stack(steps, "done").astype(np.uint8),
                states=_stack(steps, "state") if self.record_states else None,
                fields={k: np.stack([s["fields"][k] for s in steps]) for k in steps[0]["fields"]},
                success=bool(steps[-1]["success"]),
                seed=self.seed_of(index),
                index=index,
                terminated=bool(terminated),
                truncated=bool(truncated),
                outcome=outcome,
                partial=partial,
            )
        else:
            ep = EpisodeStats(
                seed=self.seed_of(index),
                index=index,
                length=int(self.lengths[i]),
                episode_return=float(self.returns[i]),
                success=bool(self.buffers[i].last_success),
                terminated=bool(terminated),
                truncated=bool(truncated),
                outcome=outcome,
                partial=partial,
            )
        self.finished.append(ep)
        self.episodes_done += 1
        if self.on_episode is not None:
            self.on_episode(ep)
        if self.progress is not None:
            self.progress.update(1)
        self.buffers[i].clear()
        self.lengths[i] = 0
        self.returns[i] = 0.0

    # ------------------------------------------------------------------- steps
    def step(self) -> Transition:
        """One control step of every env: act, step, record, run the hook, finish and
        reset the episodes that ended. A hook's "quit" sets ``quit_requested``."""
        interrupts.check()  # a Ctrl-C a callback swallowed still stops the loop
        self._ensure_started()
        n, obs = self.n, self.obs
        late = self.pacer.wait() if self.pacer is not None else 0.0
        control = self.controller.act(obs, self.info, self.envs)
        next_obs, rewards, terminated, truncated, info = self.envs.step(control.executed)
        self.steps_done += 1
        success = np.asarray(info.get("success", np.zeros(n, dtype=bool)), dtype=bool)
        active = self.episode_of >= 0
        self.returns[active] += np.asarray(rewards, dtype=np.float64)[active]
        self.lengths[active] += 1
        if self.record:
            obs_d, next_d = obs_to_dict(obs), obs_to_dict(next_obs)
            for i in np.flatnonzero(active):
                self.buffers[i].steps.append(
                    {
                        "obs": {k: v[i] for k, v in obs_d.items()},
                        "next_obs": {k: v[i] for k, v in next_d.items()},
                        "label": control.label[i],
                        "executed": control.executed[i],
                        "reward": rewards[i],
                        "done": bool(terminated[i] or truncated[i]),
                        "state": self.states[i] if self.states is not None else None,
                        "fields": {k: v[i] for k, v in control.fields.items()},
                        "success": success[i],
                    }
                )
        for i in np.flatnonzero(active):
            self.buffers[i].last_success = bool(success[i])
        episode_index = self.episode_of.copy()
        commands: dict[int, str] = {}
        if self.after_step is not None:
            event = StepEvent(
                step=self.steps_done,
                obs=next_obs,
                rewards=rewards,
                terminated=terminated,
                truncated=truncated,
                info=info,
                control=control,
                episode_steps=self.lengths.copy(),
                episodes_done=self.episodes_done,
                late_s=late,
            )
            commands = self.after_step(event) or {}
            for cmd in commands.values():
                if cmd not in COMMANDS:
                    raise ValueError(f"unknown loop command {cmd!r}; valid: {COMMANDS}")
        done = np.zeros(n, dtype=bool)
        if "quit" in commands.values():
            self.quit_requested = True
            for i, cmd in commands.items():
                if cmd == "save":
                    self._finish(i, "save")
                    done[i] = True
            self.obs, self.info = next_obs, info
            return Transition(obs, control, rewards, terminated, truncated, info, next_obs,
                              next_obs, done, episode_index)  # fmt: skip
        for i in range(n):
            cmd = commands.get(i)
            if cmd is not None:
                self._finish(i, cmd, terminated[i], truncated[i])
                done[i] = True
            elif terminated[i] or truncated[i]:
                self._finish(i, "save", terminated[i], truncated[i])
                done[i] = True
        merged = next_obs
        if done.any():
            reset_obs, _ = self._start(done)
            merged = _merge_obs(next_obs, reset_obs, done)
            if self.pacer is not None and any(c is not None for c in commands.values()):
                self.pacer.restart()
        self.obs, self.info = merged, info
        if self.record_states:
            self.states = np.stack(self.envs.call("get_state"))
        return Transition(obs, control, rewards, terminated, truncated, info, next_obs, merged,
                          done, episode_index)  # fmt: skip

    def run(self, num_episodes: int, *, keep_partial: bool = False) -> list[Episode]:
        """Step until ``num_episodes`` more episodes have finished (saved or discarded;
        ``0``: until a hook says "quit") and return them, in episode order.

        Episodes in progress when the call starts count towards the target; no episode
        starts past it (envs that finish early stay idle until the next call).

        Args:
            keep_partial: on quit or Ctrl-C, hand unfinished episodes to ``on_episode``
                flagged ``partial`` instead of dropping them.
        """
        self.finished = []
        self.quit_requested = False
        target = self.episodes_done + num_episodes if num_episodes > 0 else np.inf
        self.limit = target
        try:
            while self.episodes_done < target and not self.quit_requested:
                self.step()
        except KeyboardInterrupt:
            self.quit_requested = True
            raise
        finally:
            if self.quit_requested and keep_partial:
                for i in range(self.n):
                    if self.episode_of[i] >= 0 and self.lengths[i] > 0:
                        self._finish(i, "save", partial=True)
            self.limit = np.inf
        return sorted(self.finished, key=lambda ep: ep.index)


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
    """Run ``num_episodes`` episodes (across all sub-envs) from freshly reset envs and
    return them (a new :class:`Rollout`'s :meth:`~Rollout.run`; see there for the
    arguments). ``0`` runs until a hook says "quit"."""
    rollout = Rollout(
        envs,
        controller,
        seed=seed,
        on_episode=on_episode,
        after_step=after_step,
        pacer=pacer,
        record_states=record_states,
        progress=progress,
    )
    return rollout.run(num_episodes, keep_partial=keep_partial)


def _merge_obs(next_obs, reset_obs, mask):
    if isinstance(next_obs, dict):
        return {k: _merge_obs(next_obs[k], reset_obs[k], mask) for k in next_obs}
    out = np.array(next_obs, copy=True)
    out[mask] = np.asarray(reset_obs)[mask]
    return out
