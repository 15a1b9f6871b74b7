"""``iltk/PandaLift-v0``: a Franka Panda picks up a cube and lifts it (robomimic's Lift).

- **Action space**: ``Box(-1, 1, (7,))`` (``action_mode="cartesian"``): end-effector
  velocity (scaled to 0.25 m/s), axis-angle rate (1.5 rad/s) and the gripper (-1 open ...
  +1 closed), turned into joint targets by differential IK (``iltk.envs.panda``);
  ``action_mode="joint"``: ``Box(-1, 1, (8,))``, joint velocities (2 rad/s) and the gripper.
- **Observation** (``state``, a dict with robomimic's keys): ``robot0_eef_pos`` (3),
  ``robot0_eef_quat`` (4, xyzw), ``robot0_gripper_qpos`` (2), ``object`` (10): cube
  position (3), cube quaternion (4, xyzw), cube minus gripper (3). ``pixels``: cameras
  ``agentview`` and ``robot0_eye_in_hand``.
- **Reward terms** (``info``): ``reward_reach`` = -distance gripper to cube,
  ``reward_lift`` = -5 * the height still missing to success (0 once lifted),
  ``reward_ctrl`` = -0.01 * |action|^2, ``reward_success`` = 1 when successful. Every term
  but the last is <= 0, so (episodes ending on success) no step short of success pays.
- **Success**: the cube's bottom is more than 0.08 m above the table.
- **Episode end**: success (``terminate_on_success``) or 150 steps (7.5 s at 20 Hz).
"""

from __future__ import annotations

import numpy as np

from iltk.envs.panda import PandaTaskEnv, box_yaw, nearest_grasp_yaw, quat_mat, quat_xyzw, yaw_of

CUBE_HALF = 0.02
LIFT_HEIGHT = 0.08
# robomimic perturbs Lift's cube by a few cm; the full range here is +-0.1 m and +-45 deg
NOMINAL_CUBE = np.array([0.0, 0.0])


class PandaLiftEnv(PandaTaskEnv):
    __doc__ = __doc__
    objects_file = "panda_lift.xml"
    object_dim = 10

    def _reset_task(self, rng):
        self._reset_robot()
        cube = self._draw(rng, -0.1, 0.1, NOMINAL_CUBE)
        yaw = self._draw(rng, -np.pi / 4, np.pi / 4, 0.0)
        self._place_upright("cube", cube, CUBE_HALF, yaw)

    def _cube(self) -> np.ndarray:
        return self.data.body("cube").xpos.copy()

    def _cube_quat(self) -> np.ndarray:
        return self.data.body("cube").xquat.copy()

    def _object_obs(self):
        cube = self._cube()
        return np.concatenate([cube, quat_xyzw(quat_mat(self._cube_quat())), cube - self.eef_pos()])

    def _height(self) -> float:
        return float(self._cube()[2] - CUBE_HALF)

    def _reward_terms(self, action):
        return {
            "reward_reach": -float(np.linalg.norm(self._cube() - self.eef_pos())),
            "reward_lift": -5.0 * (LIFT_HEIGHT - min(max(self._height(), 0.0), LIFT_HEIGHT)),
            "reward_ctrl": -0.01 * float(np.sum(np.square(action))),
            "reward_success": float(self._is_success()),
        }

    def _is_success(self):
        return self._height() > LIFT_HEIGHT

    def _expert(self):
        cube = self._cube()
        yaw = nearest_grasp_yaw(box_yaw(self._cube_quat()), yaw_of(self.eef_rot()), np.pi / 2)
        return self.grasp_and_lift(cube, yaw, 2 * CUBE_HALF, lift_to=0.2)
