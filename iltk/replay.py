"""Headless replay of recorded episodes: exact state playback and re-simulation checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iltk.data.format import DatasetError
from iltk.data.reader import DemoFile
from iltk.envs import make_vector_env
from iltk.rollout import ControlOutput, run_episodes


class ReplayController:
    """Plays back recorded actions (``actions_executed``) step by step."""

    def __init__(self, executed: np.ndarray, labels: np.ndarray | None = None):
        self.executed = np.asarray(executed, dtype=np.float32)
        self.labels = self.executed if labels is None else np.asarray(labels, np.float32)
        self.t = 0

    def reset(self, env_ids):
        self.t = 0

    def act(self, obs, info, envs) -> ControlOutput:
        t = min(self.t, len(self.executed) - 1)
        self.t += 1
        n = envs.num_envs
        return ControlOutput(
            executed=np.repeat(self.executed[t : t + 1], n, 0),
            label=np.repeat(self.labels[t : t + 1], n, 0),
        )


@dataclass
class Divergence:
    demo: str
    steps: int
    initial_state_error: float
    max_state_error: float
    max_obs_error: float
    replayed_success: bool
    recorded_success: bool

    @property
    def exact(self) -> bool:
        return self.max_state_error == 0.0 and self.initial_state_error == 0.0


def verify_file(path, demos: list[str] | None = None) -> list[Divergence]:
    """Re-simulate every episode from its seed with its executed actions.

    Compares the re-simulated full states and observations with the recorded ones.
    """
    with DemoFile(path) as f:
        env_name = f.env_name
        if not env_name:
            raise DatasetError(path, "has no env_args['env_name']; cannot re-simulate")
        env_kwargs = dict(f.env_args.get("env_kwargs") or {})
        envs = make_vector_env(env_name, 1, asynchronous=False, **env_kwargs)
        out = []
        try:
            for demo in demos or f.demos:
                g = f.group(demo)
                if "states" not in g:
                    raise DatasetError(
                        path, "has no states to verify against", demo=demo, key="states"
                    )
                attrs = f.demo_attrs(demo)
                seed = int(attrs.get("seed", -1))
                if seed < 0:
                    raise DatasetError(path, "has no seed attribute", demo=demo)
                executed = f.read(
                    demo, "actions_executed" if "actions_executed" in g else "actions"
                )
                states = f.read(demo, "states")
                if len(executed) == 0:
                    raise DatasetError(
                        path,
                        "has no steps to re-simulate; drop empty episodes with 'iltk dataset "
                        "filter --min-length 1'",
                        demo=demo,
                    )
                act_dim = int(np.prod(envs.single_action_space.shape))
                if executed.ndim != 2 or executed.shape[1] != act_dim:
                    raise DatasetError(
                        path,
                        f"has actions of shape {executed.shape} but {env_name} takes {act_dim}",
                        demo=demo,
                        key="actions_executed" if "actions_executed" in g else "actions",
                    )
                ep = run_episodes(envs, ReplayController(executed), 1, seed=seed)[0]
                if states.shape[1:] != ep.states.shape[1:]:
                    raise DatasetError(
                        path,
                        f"was recorded with another version of the task's model (sim states of "
                        f"size {states.shape[1:]}, this one's {ep.states.shape[1:]}): it cannot "
                        "be re-simulated exactly (its observations and actions still train)",
                        demo=demo,
                        key="states",
                    )
                n = min(len(states), ep.length)
                state_err = float(np.max(np.abs(ep.states[:n] - states[:n]))) if n else 0.0
                obs_err = 0.0
                for key in f.obs_keys(demo):
                    rec = f.read(demo, f"obs/{key}")
                    if key in ep.obs and rec.shape[1:] != ep.obs[key].shape[1:]:
                        raise DatasetError(
                            path,
                            f"has per-step shape {rec.shape[1:]} but {env_name} observes "
                            f"{ep.obs[key].shape[1:]} with the file's settings",
                            demo=demo,
                            key=f"obs/{key}",
                        )
                    if key in ep.obs:
                        diff = np.abs(ep.obs[key][:n].astype(np.float64) - rec[:n])
                        obs_err = max(obs_err, float(diff.max()) if n else 0.0)
                out.append(
                    Divergence(
                        demo=demo,
                        steps=n,
                        initial_state_error=float(np.max(np.abs(ep.states[0] - states[0]))),
                        max_state_error=state_err,
                        max_obs_error=obs_err,
                        replayed_success=ep.success,
                        recorded_success=bool(attrs.get("success", False)),
                    )
                )
        finally:
            envs.close()
        return out
