"""``iltk/Reach-v0``: a 3-D end effector moved by velocity commands reaches a random target.

- **Action space**: ``Box(-1, 1, (3,))``, Cartesian velocity command (scaled to 0.5 m/s).
- **Observation** (``state``, 9): end-effector position (3), velocity (3), target position (3);
  ``iltk/Reach-v1`` adds the target relative to the end effector (3): 12.
- **Reward terms** (``info``): ``reward_dist`` = -distance to target, ``reward_ctrl`` =
  -0.01 * |action|^2, ``reward_success`` = 1 when successful.
- **Success**: the end effector is within 0.03 m of the target.
- **Episode end**: success (``terminate_on_success``) or 100 steps (5 s at 20 Hz).

Start and target are drawn uniformly in the workspace x, y in [-0.25, 0.25], z in
[0.05, 0.4], at least 0.1 m apart. The end effector cannot leave that box: velocity
commands that would carry it out within one control step are cut at its faces (the other
tasks are bounded by joint limits or walls).

``iltk/Reach-v1`` is the same task with the goal-relative vector the other tasks already
observe (PointMaze's goal - agent, Push's block - pusher and goal - block, Lift's cube -
gripper): "towards the target" is then a direction a linear layer can read, rather than
a difference of two absolute positions a learner must discover from few demonstrations.
Files recorded on v0 keep their 9 values and their task id.
"""

from __future__ import annotations

import numpy as np

from iltk.envs.base import MujocoTaskEnv, velocity_toward

LOW = np.array([-0.25, -0.25, 0.05])
HIGH = np.array([0.25, 0.25, 0.4])
# the layout that init_spread < 1 draws around
NOMINAL_START = np.array([-0.1, -0.1, 0.15])
NOMINAL_TARGET = np.array([0.1, 0.1, 0.25])


class ReachEnv(MujocoTaskEnv):
    __doc__ = __doc__
    xml_file = "reach.xml"
    default_camera = "front"
    display_cameras = ("wide", "top")
    action_dim = 3
    state_dim = 9
    relative = False  # v1: the target relative to the end effector observed too
    max_speed = 0.5
    success_radius = 0.03

    def _reset_task(self, rng):
        start = self._draw(rng, LOW, HIGH, NOMINAL_START)
        target = self._draw(rng, LOW, HIGH, NOMINAL_TARGET)
        while np.linalg.norm(target - start) < 0.1:
            target = self._draw(rng, LOW, HIGH, NOMINAL_TARGET)
        self.data.qpos[:3] = start
        self._set_mocap("target", target)

    heatmap_label = "end effector x, y (at the target's height)"

    def heatmap_extent(self):
        return (LOW[0], HIGH[0], LOW[1], HIGH[1])

    def _heatmap_place(self, xy):
        self.data.qpos[:3] = [xy[0], xy[1], self._target()[2]]

    def _apply_action(self, action):
        # the workspace is a box (the slide joints are unlimited): velocities that would
        # leave it are cut at its faces, so no controller can fly the effector off camera
        # (lag: the velocity actuator's time constant, mass / kv = 0.5 / 50 s)
        self.data.ctrl[:] = self._keep_inside(
            self._eef(), action * self.max_speed, LOW, HIGH, lag=0.01
        )

    def _eef(self):
        return self.data.qpos[:3].copy()

    def _target(self):
        return self.data.mocap_pos[0].copy()

    def _state_obs(self):
        eef, target = self._eef(), self._target()
        parts = [eef, self.data.qvel[:3], target]
        if self.relative:
            parts.append(target - eef)
        return np.concatenate(parts)

    def _reward_terms(self, action):
        return {
            "reward_dist": -float(np.linalg.norm(self._eef() - self._target())),
            "reward_ctrl": -0.01 * float(np.sum(np.square(action))),
            "reward_success": float(self._is_success()),
        }

    def _is_success(self):
        return bool(np.linalg.norm(self._eef() - self._target()) < self.success_radius)

    def expert_action(self):
        return velocity_toward(self._eef(), self._target(), gain=8.0).astype(np.float32)


class ReachRelativeEnv(ReachEnv):
    """``iltk/Reach-v1``: Reach with the target relative to the end effector observed
    (12 values: end effector, velocity, target, target - end effector)."""

    state_dim = 12
    relative = True
