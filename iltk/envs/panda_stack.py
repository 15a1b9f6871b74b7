"""``iltk/PandaStack-v0``: a Franka Panda puts a red cube on a green one (robomimic's Stack).

- **Action space**: as ``iltk/PandaLift-v0`` (``Box(-1, 1, (7,))`` Cartesian, or 8 joint
  velocities and the gripper under ``action_mode="joint"``).
- **Observation** (``state``, a dict with robomimic's keys): ``robot0_eef_pos`` (3),
  ``robot0_eef_quat`` (4, xyzw), ``robot0_gripper_qpos`` (2), ``object`` (23): red cube
  position (3) and quaternion (4, xyzw), green cube position (3) and quaternion (4), red
  minus gripper (3), green minus gripper (3), green minus red (3). ``pixels``: cameras
  ``agentview`` and ``robot0_eye_in_hand``.
- **Reward terms** (``info``): ``reward_reach`` = -distance gripper to red cube,
  ``reward_stack`` = -distance of the red cube to its place on the green one,
  ``reward_ctrl`` = -0.01 * |action|^2, ``reward_success`` = 1 when successful.
- **Success**: the red cube rests on the green one (centres within 0.02 m in the plane,
  its bottom within 0.01 m of the green top) and the gripper has let go of it.
- **Episode end**: success (``terminate_on_success``) or 250 steps (12.5 s at 20 Hz).
"""

from __future__ import annotations

import numpy as np

from iltk.envs.panda import PandaTaskEnv, box_yaw, nearest_grasp_yaw, quat_mat, quat_xyzw, yaw_of

HALF_A, HALF_B = 0.02, 0.025
CARRY_Z = 0.2
NOMINAL_A = np.array([0.0, -0.1])
NOMINAL_B = np.array([0.0, 0.1])


class PandaStackEnv(PandaTaskEnv):
    __doc__ = __doc__
    objects_file = "panda_stack.xml"
    object_dim = 23

    def _reset_task(self, rng):
        self._reset_robot()
        a = self._draw(rng, [-0.1, -0.2], [0.1, 0.2], NOMINAL_A)
        b = self._draw(rng, [-0.1, -0.2], [0.1, 0.2], NOMINAL_B)
        while np.linalg.norm(a - b) < 0.1:  # a fixed number of draws per try keeps seeds apart
            a = self._draw(rng, [-0.1, -0.2], [0.1, 0.2], NOMINAL_A)
            b = self._draw(rng, [-0.1, -0.2], [0.1, 0.2], NOMINAL_B)
        for name, xy, half in (("cubeA", a, HALF_A), ("cubeB", b, HALF_B)):
            yaw = self._draw(rng, -np.pi / 4, np.pi / 4, 0.0)
            self._place_upright(name, xy, half, yaw)

    def _pos(self, name):
        return self.data.body(name).xpos.copy()

    def _quat(self, name):
        return self.data.body(name).xquat.copy()

    def _object_obs(self):
        a, b, grip = self._pos("cubeA"), self._pos("cubeB"), self.eef_pos()
        qa = quat_xyzw(quat_mat(self._quat("cubeA")))
        qb = quat_xyzw(quat_mat(self._quat("cubeB")))
        return np.concatenate([a, qa, b, qb, a - grip, b - grip, b - a])

    def _place(self) -> np.ndarray:
        """Where the red cube's centre rests on the green cube."""
        b = self._pos("cubeB")
        return b + np.array([0.0, 0.0, HALF_B + HALF_A])

    def _on_top(self) -> bool:
        a, place = self._pos("cubeA"), self._place()
        return float(np.linalg.norm(a[:2] - place[:2])) < 0.02 and abs(a[2] - place[2]) < 0.01

    def _reward_terms(self, action):
        return {
            "reward_reach": -float(np.linalg.norm(self._pos("cubeA") - self.eef_pos())),
            "reward_stack": -float(np.linalg.norm(self._pos("cubeA") - self._place())),
            "reward_ctrl": -0.01 * float(np.sum(np.square(action))),
            "reward_success": float(self._is_success()),
        }

    def _is_success(self):
        return self._on_top() and self.gripper_opening() > 2 * HALF_A + 0.008

    def _expert(self):
        a, grip = self._pos("cubeA"), self.eef_pos()
        place = self._place()
        grip_yaw = yaw_of(self.eef_rot())
        if self._on_top():  # let go and rise
            return self.servo(np.array([grip[0], grip[1], grip[2] + 0.05]), None, -1.0)
        yaw_a = nearest_grasp_yaw(box_yaw(self._quat("cubeA")), grip_yaw, np.pi / 2)
        if not self.holding(a, 2 * HALF_A) or a[2] < HALF_A + 0.01:
            return self.grasp_and_lift(a, yaw_a, 2 * HALF_A, lift_to=CARRY_Z)
        # carrying: the red cube over its place, then down onto it; the green cube's yaw
        # is matched so the faces line up
        yaw_b = nearest_grasp_yaw(box_yaw(self._quat("cubeB")), grip_yaw, np.pi / 2)
        offset = grip - a  # the grip relative to the held cube
        xy_err = float(np.linalg.norm(place[:2] - a[:2]))
        if xy_err > 0.008:
            z = CARRY_Z if xy_err > 0.03 else max(a[2], place[2] + 0.03)
            target = np.array([place[0], place[1], z]) + offset * [1, 1, 0]
            target[2] = max(target[2], z + offset[2]) if xy_err > 0.03 else z + offset[2]
            return self.servo(target, yaw_b, 1.0, gain=6.0)
        return self.servo(place + [0, 0, 0.004] + offset, yaw_b, 1.0, gain=5.0)
