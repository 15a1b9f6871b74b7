"""``iltk/PandaPickPlace-v0``: a Franka Panda puts a can into a bin (robomimic's Can).

- **Action space**: as ``iltk/PandaLift-v0`` (``Box(-1, 1, (7,))`` Cartesian, or 8 joint
  velocities and the gripper under ``action_mode="joint"``).
- **Observation** (``state``, a dict with robomimic's keys): ``robot0_eef_pos`` (3),
  ``robot0_eef_quat`` (4, xyzw), ``robot0_gripper_qpos`` (2), ``object`` (13): can position
  (3) and quaternion (4, xyzw), can minus gripper (3), bin centre minus can (3).
  ``pixels``: cameras ``agentview`` and ``robot0_eye_in_hand``.
- **Reward terms** (``info``): ``reward_reach`` = -distance gripper to can,
  ``reward_place`` = -distance of the can to the bin's centre (at its floor),
  ``reward_ctrl`` = -0.01 * |action|^2, ``reward_success`` = 1 when successful.
- **Success**: the can stands inside the bin (its centre within the walls, its bottom below
  their top) and the gripper has let go of it.
- **Episode end**: success (``terminate_on_success``) or 250 steps (12.5 s at 20 Hz).
"""

from __future__ import annotations

import numpy as np

from iltk.envs.panda import PandaTaskEnv, quat_mat, quat_xyzw

CAN_RADIUS, CAN_HALF = 0.025, 0.04
BIN_INNER = np.array([0.095, 0.075])  # half extents inside the walls
BIN_FLOOR, BIN_WALL = 0.008, 0.07
CARRY_Z = 0.22  # the grip's height when lifting the can
CARRY_CAN = BIN_WALL + CAN_HALF + 0.05  # the can's centre when carried over the walls
NOMINAL_CAN = np.array([0.0, -0.15])


class PandaPickPlaceEnv(PandaTaskEnv):
    __doc__ = __doc__
    objects_file = "panda_pick_place.xml"
    object_dim = 13

    def _reset_task(self, rng):
        self._reset_robot()
        can = self._draw(rng, [-0.12, -0.25], [0.12, -0.08], NOMINAL_CAN)
        yaw = self._draw(rng, -np.pi, np.pi, 0.0)
        self._place_upright("can", can, CAN_HALF, yaw)

    def _can(self):
        return self.data.body("can").xpos.copy()

    def _bin(self):
        return self.data.body("bin").xpos.copy() + np.array([0.0, 0.0, BIN_FLOOR + CAN_HALF])

    def _object_obs(self):
        can = self._can()
        quat = quat_xyzw(quat_mat(self.data.body("can").xquat))
        return np.concatenate([can, quat, can - self.eef_pos(), self._bin() - can])

    def _in_bin(self) -> bool:
        can, centre = self._can(), self._bin()
        inside = np.all(np.abs(can[:2] - centre[:2]) < BIN_INNER - CAN_RADIUS + 0.01)
        return bool(inside and can[2] - CAN_HALF < BIN_WALL - 0.02)

    def _reward_terms(self, action):
        return {
            "reward_reach": -float(np.linalg.norm(self._can() - self.eef_pos())),
            "reward_place": -float(np.linalg.norm(self._can() - self._bin())),
            "reward_ctrl": -0.01 * float(np.sum(np.square(action))),
            "reward_success": float(self._is_success()),
        }

    def _is_success(self):
        return self._in_bin() and self.gripper_opening() > 2 * CAN_RADIUS + 0.008

    def _expert(self):
        can, grip, centre = self._can(), self.eef_pos(), self._bin()
        if self._in_bin():  # let go and rise
            return self.servo(np.array([grip[0], grip[1], grip[2] + 0.05]), None, -1.0)
        if not self.holding(can, 2 * CAN_RADIUS) or (
            can[2] < CAN_HALF + 0.01 and float(np.linalg.norm(can[:2] - centre[:2])) > 0.1
        ):
            return self.grasp_and_lift(can, None, 2 * CAN_RADIUS, lift_to=CARRY_Z)
        # carrying: straight up until the can's bottom clears the walls, across at that
        # height, then down into the bin (targets for the can's centre)
        if float(np.linalg.norm(centre[:2] - can[:2])) < 0.02:
            target = centre + [0.0, 0.0, 0.01]
        elif can[2] - CAN_HALF > BIN_WALL + 0.02:
            target = np.array([centre[0], centre[1], CARRY_CAN])
        else:
            target = np.array([can[0], can[1], CARRY_CAN])
        return self.servo(target + grip - can, None, 1.0, gain=6.0)
