"""``iltk/Lift-v0``: a parallel gripper picks up a cube and lifts it above a height.

- **Action space**: ``Box(-1, 1, (4,))``: gripper xyz velocity command (scaled to 0.3 m/s)
  and the gripper command (-1 fully open ... +1 fully closed).
- **Observation** (``state``, 17): gripper position (3), gripper velocity (3), finger
  opening (1), cube position (3), cube orientation quaternion (4), cube minus gripper (3).
- **Reward terms** (``info``): ``reward_reach`` = -distance gripper to cube,
  ``reward_lift`` = -5 * the height still missing to success (0 once lifted),
  ``reward_ctrl`` = -0.01 * |action|^2, ``reward_success`` = 1 when successful. Every
  term but the last is <= 0, so (episodes ending on success) no step short of success pays.
- **Success**: the cube's bottom is more than 0.08 m above the table.
- **Episode end**: success (``terminate_on_success``) or 150 steps (7.5 s at 20 Hz).
"""

from __future__ import annotations

import numpy as np

from iltk.envs.base import MujocoTaskEnv

CUBE_HALF = 0.02
LIFT_HEIGHT = 0.08
FINGER_TRAVEL = 0.035  # each finger closes by up to this much (opening 0.06 -> 0)
OPEN_GAP = 0.06  # inner gap between the fingers when fully open
# the layout that init_spread < 1 draws around (cube yaw 0)
NOMINAL_CUBE = np.array([0.05, 0.03])
NOMINAL_HAND = np.array([-0.08, -0.06, 0.16])


class LiftEnv(MujocoTaskEnv):
    __doc__ = __doc__
    xml_file = "lift.xml"
    default_camera = "front"
    action_dim = 4
    state_dim = 17
    max_speed = 0.3

    def _reset_task(self, rng):
        cube = self._draw(rng, -0.12, 0.12, NOMINAL_CUBE)
        hand = self._draw(rng, -0.15, 0.15, NOMINAL_HAND[:2])
        self.data.qpos[0:3] = [hand[0], hand[1], self._draw(rng, 0.12, 0.2, NOMINAL_HAND[2])]
        # cube free joint: xyz + quaternion (a random yaw)
        yaw = self._draw(rng, -0.35, 0.35, 0.0)
        self.data.qpos[5:8] = [cube[0], cube[1], CUBE_HALF]
        self.data.qpos[8:12] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]

    def _apply_action(self, action):
        self.data.ctrl[0:3] = action[:3] * self.max_speed
        closing = (action[3] + 1.0) / 2.0 * FINGER_TRAVEL
        self.data.ctrl[3:5] = closing

    def _grip(self):
        return self._site_pos("grip")

    def _cube(self):
        return self.data.qpos[5:8].copy()

    def _opening(self):
        return OPEN_GAP - float(self.data.qpos[3] + self.data.qpos[4])

    def _state_obs(self):
        grip, cube = self._grip(), self._cube()
        return np.concatenate(
            [grip, self.data.qvel[0:3], [self._opening()], cube, self.data.qpos[8:12], cube - grip]
        )

    def _height(self):
        return float(self._cube()[2] - CUBE_HALF)

    def _reward_terms(self, action):
        return {
            "reward_reach": -float(np.linalg.norm(self._cube() - self._grip())),
            # <= 0: the height still missing to success. Episodes end on success, so a
            # positive lift term (it was 5 * height) paid PPO to hold the cube just below
            # the success height instead of lifting it (benchmarks/RESULTS.md)
            "reward_lift": -5.0 * (LIFT_HEIGHT - min(max(self._height(), 0.0), LIFT_HEIGHT)),
            "reward_ctrl": -0.01 * float(np.sum(np.square(action))),
            "reward_success": float(self._is_success()),
        }

    def _is_success(self):
        return self._height() > LIFT_HEIGHT

    def expert_action(self):
        """Hover over the cube, descend with open fingers, close, and lift once grasped."""
        grip, cube = self._grip(), self._cube()
        rel = cube - grip
        xy_err = np.linalg.norm(rel[:2])
        opening = self._opening()
        between = xy_err < 0.015 and abs(rel[2]) < 0.02
        # The squeezed width of the cube between the fingers depends on its yaw.
        w, z = self.data.qpos[8], self.data.qpos[11]
        yaw = 2.0 * np.arctan2(z, w)
        width = 2 * CUBE_HALF * (abs(np.cos(yaw)) + abs(np.sin(yaw)))
        holding = between and opening < width + 0.004
        action = np.zeros(4, dtype=np.float32)
        if holding:
            action[:2] = np.clip(rel[:2] * 10.0, -1, 1)
            action[2] = 1.0
            action[3] = 1.0
        elif between and abs(rel[2]) < 0.006:
            action[:3] = np.clip(rel * 10.0, -1, 1)
            action[3] = 1.0  # close
        elif xy_err > 0.008:
            hover = max(cube[2] + 0.05, 0.0)
            climb = np.clip((hover - grip[2]) * 10.0, -1, 1) if grip[2] < hover - 0.01 else 0.0
            action[:2] = np.clip(rel[:2] * 12.0, -1, 1) * (0.3 if climb > 0.2 else 1.0)
            action[2] = climb
            action[3] = -1.0
        else:
            action[:2] = np.clip(rel[:2] * 12.0, -1, 1)
            action[2] = np.clip(rel[2] * 10.0, -1, 1)
            action[3] = -1.0
        return action
