"""Headless replay of recorded episodes: exact state playback (frames, mp4) and
re-simulation checks. The replay window (``teleop.viewer``) is built on ``EpisodePlayer``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iltk.data.format import DatasetError
from iltk.data.reader import DemoFile
from iltk.envs import make_env, make_vector_env
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
    """Re-simulate every episode from its seed with its executed actions, whole: each is
    replayed under a time limit of its own recorded length (an episode recorded with a
    longer limit than the task's default is verified to its end, not cut at the default).

    Compares the re-simulated full states and observations with the recorded ones.
    """
    with DemoFile(path) as f:
        env_name = f.env_name
        if not env_name:
            raise DatasetError(path, "has no env_args['env_name']; cannot re-simulate")
        env_kwargs = dict(f.env_args.get("env_kwargs") or {})
        envs = make_vector_env(env_name, 1, asynchronous=False, **env_kwargs)
        limits = {}  # episode length -> an env with that time limit
        out = []
        try:
            for demo in demos or f.demos:
                g = f.group(demo)
                if "states" not in g:
                    raise DatasetError(
                        path,
                        "has no states to verify against" + no_states_reason(f),
                        demo=demo,
                        key="states",
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
                if len(executed) not in limits:
                    limits[len(executed)] = make_vector_env(
                        env_name,
                        1,
                        asynchronous=False,
                        **{**env_kwargs, "max_episode_steps": len(executed)},
                    )
                whole = limits[len(executed)]
                ep = run_episodes(whole, ReplayController(executed), 1, seed=seed)[0]
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
            for env in limits.values():
                env.close()
        return out


class EpisodePlayer:
    """Headless core of the replay viewer: episode ``k`` of a file, frame by frame."""

    def __init__(
        self, path: str | Path, render_size: tuple[int, int] = (320, 240), display: bool = False
    ):
        self.path = Path(path)
        self.render_size, self.display = tuple(render_size), display
        self.file = DemoFile(self.path)
        if not self.file.demos:
            raise DatasetError(self.path, "holds no episodes")
        env_name = self.file.env_name
        if not env_name:
            raise DatasetError(self.path, "names no env (data.attrs['env_args']); cannot replay")
        kwargs = dict(self.file.env_args.get("env_kwargs") or {})
        size = (
            {"render_width": render_size[0], "render_height": render_size[1]}
            if env_name.startswith("iltk/")
            else {"width": render_size[0], "height": render_size[1]}
        )
        self.env = make_env(env_name, render_mode="rgb_array", **{**kwargs, **size})
        if not hasattr(self.env.unwrapped, "set_state") or not env_name.startswith("iltk/"):
            raise DatasetError(self.path, f"exact replay needs an iltk task, not {env_name!r}")
        self.env.reset(seed=0)
        self.fps = float(self.file.env_args.get("control_freq") or 20.0)
        self.load(0)

    def load(self, k: int) -> None:
        self.k = int(np.clip(k, 0, len(self.file.demos) - 1))
        self.demo = self.file.demos[self.k]
        g = self.file.group(self.demo)
        if "states" not in g:
            raise DatasetError(
                self.path,
                "has no recorded states to replay" + no_states_reason(self.file),
                demo=self.demo,
                key="states",
            )
        self.states = self.file.read(self.demo, "states")
        expected = self.env.unwrapped.state_size
        if self.states.shape[1] != expected:
            raise DatasetError(
                self.path,
                f"states have {self.states.shape[1]} values but {self.file.env_name} "
                f"has {expected}: recorded with another model",
                demo=self.demo,
                key="states",
            )
        self.actions = self.file.read(self.demo, "actions")
        self.rewards = (
            self.file.read(self.demo, "rewards") if "rewards" in g else np.zeros(len(self.states))
        )
        self.attrs = self.file.demo_attrs(self.demo)

    def __len__(self) -> int:
        return len(self.states)

    def frame(self, t: int) -> np.ndarray:
        """The scene at step t (a window's display renderer when ``display``, else the
        model's full quality, as videos use)."""
        self.env.unwrapped.set_state(self.states[t])
        if self.display:
            return self.env.unwrapped.render_frame(*self.render_size, display=True)
        return self.env.render()

    def hud(self, t: int, speed: float, playing: bool) -> list[str]:
        a = ", ".join(f"{x:+.2f}" for x in self.actions[t])
        return [
            f"{self.path.name}   {self.demo} ({self.k + 1}/{len(self.file.demos)})   "
            f"source {self.attrs.get('source', '?')}   success {self.attrs.get('success', '?')}",
            f"step {t + 1}/{len(self)}   {'playing' if playing else 'paused'}   speed {speed:g}x",
            f"action [{a}]   reward {self.rewards[t]:+.3f}",
        ]

    def close(self) -> None:
        self.env.close()
        self.file.close()


def replay_video(
    path,
    out: str | Path,
    episodes: list[int] | None = None,
    render_size=(320, 240),
    progress: bool = False,
) -> Path:
    """Render recorded episodes (exact replay of their states) to an mp4 (``progress``: a
    bar over the frames)."""
    from tqdm.auto import tqdm

    from iltk.video import write_video

    player = EpisodePlayer(path, render_size)
    chosen = episodes if episodes is not None else range(len(player.file.demos))
    total = sum(player.file.num_samples(player.file.demos[k]) for k in chosen)
    bar = tqdm(total=total, desc=f"render {Path(out).name}", unit="frame", disable=not progress)

    def frames():  # streamed into the encoder: a long file never sits in memory
        for k in chosen:
            player.load(k)
            for t in range(len(player)):
                yield player.frame(t)
                bar.update(1)

    try:
        return write_video(out, frames(), player.fps)
    finally:
        bar.close()
        player.close()


def no_states_reason(f) -> str:
    """Why a file has no sim states, where it says (an import from a LeRobot dataset)."""
    if "imported_from" in f.attrs:
        return (
            " (imported from a LeRobot dataset, which records no simulator states; it trains, "
            "but cannot be replayed exactly or verified)"
        )
    return ""
