"""Shared machinery of the iltk MuJoCo tasks.

A task is a small subclass of :class:`MujocoTaskEnv` that names its MJCF file (kept in
``iltk/envs/assets/``) and fills in five hooks: ``_reset_task``, ``_apply_action``,
``_state_obs``, ``_reward_terms`` and ``_is_success``, plus ``expert_action`` for its
scripted expert. Everything else (observation modes, offscreen rendering, physics
sub-stepping at the control rate, exact state save/restore) lives here once.

Every piece of episode state that matters lives in MuJoCo's own state vector: goals and
targets are mocap bodies, so ``get_state()`` / ``set_state()`` (``mjSTATE_INTEGRATION``,
which includes mocap poses and the solver warm start) restore a scene exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

ASSETS = Path(__file__).parent / "assets"
OBS_MODES = ("state", "pixels", "state+pixels")
STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


DISPLAY_SHADOW_SIZE = 1024  # shadow map of renderers for live windows (see render_frame)


class MujocoTaskEnv(gym.Env):
    """Base class of the iltk manipulation tasks (see each task's docstring).

    Args:
        obs_mode: "state" (a float32 vector), "pixels" (uint8 HxWx3 camera image) or
            "state+pixels" (a dict with both, keys "state" and "pixels").
        image_size: side of the square camera observation in pixels.
        render_mode: None or "rgb_array" (``render()`` returns a frame for videos).
        render_width: width of ``render()`` frames.
        render_height: height of ``render()`` frames.
        control_freq: control rate in Hz; physics is sub-stepped to match it.
        camera: name of the camera used for pixels and rendering (task default if None).
        terminate_on_success: end the episode as soon as the task reports success.
        init_spread: how widely ``reset`` spreads the start layout, in [0, 1]. 1 (the
            default) draws from the task's full ranges; below 1 every drawn quantity is
            pulled towards the task's fixed nominal layout, ``nominal + s * (draw -
            nominal)``, so 0 starts every episode from that one layout. Narrow starts
            (robomimic's tasks perturb their objects by a few cm) are where a policy fails
            by drifting off its demonstrations rather than by meeting a layout it has not
            seen.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    xml_file: str = ""
    default_camera: str = "top"
    display_cameras: tuple[str, ...] = ()
    """The views a live window shows, main first (empty: the default camera, then the next)."""
    action_dim: int = 0
    state_dim: int = 0

    def __init__(
        self,
        obs_mode: str = "state",
        image_size: int = 84,
        render_mode: str | None = None,
        render_width: int = 320,
        render_height: int = 240,
        control_freq: float = 20.0,
        camera: str | None = None,
        terminate_on_success: bool = True,
        init_spread: float = 1.0,
    ):
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        if not control_freq > 0:
            raise ValueError(f"control_freq must be positive, got {control_freq}")
        if not 0.0 <= float(init_spread) <= 1.0:
            raise ValueError(f"init_spread must be in [0, 1], got {init_spread}")
        if int(image_size) < 8:
            raise ValueError(f"image_size must be at least 8, got {image_size}")
        self.model = self._load_model()
        self.data = mujoco.MjData(self.model)
        self.obs_mode = obs_mode
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.render_width, self.render_height = int(render_width), int(render_height)
        self.control_freq = float(control_freq)
        self.n_substeps = max(1, round(1.0 / (self.control_freq * self.model.opt.timestep)))
        self.camera = camera or self.default_camera
        if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera) < 0:
            raise ValueError(f"unknown camera {self.camera!r} in {self.xml_file}")
        self.terminate_on_success = bool(terminate_on_success)
        self.init_spread = float(init_spread)
        self.metadata = {**self.metadata, "render_fps": self.control_freq}
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._state_buf = np.zeros(mujoco.mj_stateSize(self.model, STATE_SPEC))

        self.action_space = spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        state_space = spaces.Box(-np.inf, np.inf, (self.state_dim,), np.float32)
        pixel_space = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        if obs_mode == "state":
            self.observation_space = state_space
        elif obs_mode == "pixels":
            self.observation_space = pixel_space
        else:
            self.observation_space = spaces.Dict({"state": state_space, "pixels": pixel_space})

    def _keep_inside(
        self, pos: np.ndarray, velocity: np.ndarray, low, high, lag: float = 0.0
    ) -> np.ndarray:
        """The velocity command, limited so that one control step (plus the actuator's
        ``lag`` in seconds, the time it takes to brake) cannot carry the agent out of its
        workspace box: scripted, learned and human control all stay inside."""
        horizon = 1.0 / self.control_freq + lag
        return np.clip(
            velocity, (np.asarray(low) - pos) / horizon, (np.asarray(high) - pos) / horizon
        )

    def _draw(self, rng: np.random.Generator, low, high, nominal) -> np.ndarray | float:
        """A uniform draw from [low, high] pulled towards ``nominal`` by ``init_spread``.

        Tasks draw every layout quantity through this, so one draw is taken from ``rng``
        whatever the spread, and spread 1 returns the plain draw unchanged.
        """
        u = rng.uniform(low, high, size=np.shape(nominal) or None)
        if self.init_spread == 1.0:
            return u
        return nominal + self.init_spread * (u - np.asarray(nominal))

    # ----------------------------------------------------------------- task hooks
    def _load_model(self) -> mujoco.MjModel:
        return mujoco.MjModel.from_xml_path(str(ASSETS / self.xml_file))

    def _reset_task(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _apply_action(self, action: np.ndarray) -> None:
        raise NotImplementedError

    def _state_obs(self) -> np.ndarray:
        raise NotImplementedError

    def _reward_terms(self, action: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def _is_success(self) -> bool:
        raise NotImplementedError

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action in the current state (any state, on or off its path)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self._reset_task(self.np_random)
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {"success": self._is_success()}

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        if action.size != self.action_dim:
            raise ValueError(
                f"{type(self).__name__}: an action has {self.action_dim} numbers, got shape "
                f"{action.shape}"
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(
                f"{type(self).__name__}: action {action.ravel().tolist()} is not finite (NaN or "
                "inf); nothing was applied"
            )
        action = np.clip(action.reshape(self.action_dim), -1, 1)
        self._apply_action(action)
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        # mj_step leaves body and site poses one substep behind qpos; recompute them so
        # observations are a function of the state alone, exactly as after set_state()
        # (exact replay depends on it). Kinematics is all observations read.
        mujoco.mj_kinematics(self.model, self.data)
        terms = self._reward_terms(action)
        reward = float(sum(terms.values()))
        success = bool(self._is_success())
        terminated = success and self.terminate_on_success
        info = {"success": success, **terms}
        return self._obs(), reward, terminated, False, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.render_frame(self.render_width, self.render_height)

    def close(self):
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # ---------------------------------------------------------------- utilities
    def render_frame(
        self,
        width: int,
        height: int,
        camera: str | None = None,
        display: bool = False,
        shadows: bool = True,
    ) -> np.ndarray:
        """An RGB frame (height, width, 3) uint8 of the current scene, rendered offscreen.

        ``display=True`` is for live windows: the same scene with a 1024-texel shadow map
        instead of the model's 4096, which costs most of a software-rendered frame (30 ms
        against 7.6 ms for 320x240 on the 2-core CPU) and keeps the shadow, the depth cue.
        Observations and videos keep the model's quality. ``shadows=False`` (a live window
        on a busy CPU) skips the shadow pass, most of what a frame costs.
        """
        key = (int(height), int(width), bool(display))
        if key not in self._renderers:
            vis = self.model.vis
            saved = (vis.quality.shadowsize, vis.global_.offwidth, vis.global_.offheight)
            if display:  # read when the renderer's GL context is made, restored at once
                vis.quality.shadowsize = min(saved[0], DISPLAY_SHADOW_SIZE)
                vis.global_.offwidth = max(saved[1], key[1])  # a window may be large
                vis.global_.offheight = max(saved[2], key[0])
            try:
                self._renderers[key] = mujoco.Renderer(self.model, height=key[0], width=key[1])
            finally:
                vis.quality.shadowsize, vis.global_.offwidth, vis.global_.offheight = saved
        renderer = self._renderers[key]
        if camera is None:  # a live window shows the task's main display view
            camera = self.display_cameras[0] if display and self.display_cameras else self.camera
        renderer.update_scene(self.data, camera=camera)
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = bool(shadows)
        return renderer.render()

    def get_state(self) -> np.ndarray:
        """The full simulator state (float64 vector) for exact replay."""
        mujoco.mj_getState(self.model, self.data, self._state_buf, STATE_SPEC)
        return self._state_buf.copy()

    def set_state(self, state: np.ndarray) -> None:
        """Restore a state returned by :meth:`get_state`; the next steps are reproduced exactly."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != self._state_buf.shape:
            raise ValueError(
                f"{type(self).__name__}.set_state: expected a state of shape "
                f"{self._state_buf.shape}, got {state.shape}"
            )
        mujoco.mj_setState(self.model, self.data, state, STATE_SPEC)
        mujoco.mj_forward(self.model, self.data)

    @property
    def state_size(self) -> int:
        return self._state_buf.shape[0]

    def model_xml(self) -> str:
        """The MJCF of the scene (stored with every recorded episode)."""
        return (ASSETS / self.xml_file).read_text()

    def _obs(self):
        if self.obs_mode == "state":
            return self._state_obs().astype(np.float32)
        pixels = self.render_frame(self.image_size, self.image_size)
        if self.obs_mode == "pixels":
            return pixels
        return {"state": self._state_obs().astype(np.float32), "pixels": pixels}

    # helpers for tasks
    def _body_pos(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def _site_pos(self, name: str) -> np.ndarray:
        return self.data.site(name).xpos.copy()

    # ------------------------------------------------------------ reward maps
    heatmap_label: str = ""
    """What a reward heatmap moves over the plane (empty: the task has no heatmap)."""
    heatmap_obs_xy: slice = slice(0, 2)
    """Where that thing's xy lies in the state observation (to draw trajectories on the map)."""

    def heatmap_extent(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the plane a reward heatmap covers, for the
        current episode (e.g. around its goal)."""
        raise NotImplementedError(f"{type(self).__name__} has no reward heatmap")

    def _heatmap_place(self, xy: np.ndarray) -> None:
        """Put the thing a heatmap moves at ``xy`` (qpos only; kinematics follows)."""
        raise NotImplementedError(f"{type(self).__name__} has no reward heatmap")

    def heatmap_observations(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """State observations (len(ys), len(xs), state_dim) of the current scene with the
        heatmap's thing moved to every (x, y) of the grid, at rest, everything else as it
        is; the scene is restored afterwards."""
        saved = self.get_state()
        out = np.zeros((len(ys), len(xs), self.state_dim), np.float32)
        try:
            for i, y in enumerate(ys):
                for j, x in enumerate(xs):
                    self._heatmap_place(np.array([x, y]))
                    self.data.qvel[:] = 0.0
                    mujoco.mj_kinematics(self.model, self.data)
                    out[i, j] = self._state_obs()
        finally:
            self.set_state(saved)
            mujoco.mj_forward(self.model, self.data)
        return out

    def _set_mocap(self, body: str, pos) -> None:
        mocap_id = self.model.body(body).mocapid[0]
        self.data.mocap_pos[mocap_id] = pos


def velocity_toward(pos: np.ndarray, target: np.ndarray, gain: float, max_norm: float = 1.0):
    """A proportional velocity command toward ``target``, its norm capped at ``max_norm``."""
    command = gain * (np.asarray(target) - np.asarray(pos))
    norm = np.linalg.norm(command)
    if norm > max_norm:
        command *= max_norm / norm
    return command
