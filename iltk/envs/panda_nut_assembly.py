"""``iltk/PandaNutAssembly-v0``: a Franka Panda puts a square nut on its peg (robomimic's Square).

- **Action space**: as ``iltk/PandaLift-v0`` (``Box(-1, 1, (7,))`` Cartesian, or 8 joint
  velocities and the gripper under ``action_mode="joint"``). The task needs yaw: the nut
  goes on the square peg only within ~10 degrees of the peg's yaw (mod 90).
- **Observation** (``state``, a dict with robomimic's keys): ``robot0_eef_pos`` (3),
  ``robot0_eef_quat`` (4, xyzw), ``robot0_gripper_qpos`` (2), ``object`` (17): nut position
  (3) and quaternion (4, xyzw), handle minus gripper (3), peg minus nut (3), the nut's yaw
  relative to the peg's as (cos 4a, sin 4a) (the square's symmetry), and the nut's yaw as
  (cos, sin). ``pixels``: cameras ``agentview`` and ``robot0_eye_in_hand``.
- **Reward terms** (``info``): ``reward_reach`` = -distance gripper to the handle,
  ``reward_place`` = -distance of the nut to its place around the foot of the peg,
  ``reward_ctrl`` = -0.01 * |action|^2, ``reward_success`` = 1 when successful.
- **Success**: the nut is around the peg, low (its centre within 0.012 m of the peg's in the
  plane, below 0.03 m).
- **Episode end**: success (``terminate_on_success``) or 300 steps (15 s at 20 Hz).
"""

from __future__ import annotations

import numpy as np

from iltk.envs.panda import PandaTaskEnv, box_yaw, quat_mat, quat_xyzw, yaw_of

HANDLE = np.array([0.075, 0.0])  # the handle's centre in the nut's frame
HANDLE_WIDTH = 0.016
NUT_HALF_Z = 0.01
PEG_TOP = 0.07
CARRY_NUT = PEG_TOP + NUT_HALF_Z + 0.035  # the nut's centre when carried over the peg
NOMINAL_NUT = np.array([0.0, -0.12])


def _rot2(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


class PandaNutAssemblyEnv(PandaTaskEnv):
    __doc__ = __doc__
    objects_file = "panda_nut_assembly.xml"
    object_dim = 17

    def _reset_task(self, rng):
        self._reset_robot()
        nut = self._draw(rng, [-0.12, -0.2], [0.12, -0.06], NOMINAL_NUT)
        yaw = self._draw(rng, -np.pi / 2, np.pi / 2, 0.0)
        self._place_upright("nut", nut, NUT_HALF_Z, yaw)

    def _nut(self):
        return self.data.body("nut").xpos.copy()

    def _nut_yaw(self) -> float:
        return box_yaw(self.data.body("nut").xquat)

    def _handle(self) -> np.ndarray:
        nut = self._nut()
        return np.r_[nut[:2] + _rot2(self._nut_yaw()) @ HANDLE, nut[2]]

    def _peg(self):
        return self.data.body("peg").xpos.copy()

    def _peg_yaw(self) -> float:
        return box_yaw(self.data.body("peg").xquat)

    def _object_obs(self):
        nut, grip = self._nut(), self.eef_pos()
        quat = quat_xyzw(quat_mat(self.data.body("nut").xquat))
        rel = 4.0 * (self._nut_yaw() - self._peg_yaw())
        return np.concatenate(
            [
                nut,
                quat,
                self._handle() - grip,
                self._peg() - nut,
                [np.cos(rel), np.sin(rel)],
                [np.cos(self._nut_yaw()), np.sin(self._nut_yaw())],
            ]
        )

    def _on_peg(self, height: float) -> bool:
        nut, peg = self._nut(), self._peg()
        return float(np.linalg.norm(nut[:2] - peg[:2])) < 0.012 and nut[2] < height

    def _reward_terms(self, action):
        place = np.r_[self._peg()[:2], NUT_HALF_Z]
        return {
            "reward_reach": -float(np.linalg.norm(self._handle() - self.eef_pos())),
            "reward_place": -float(np.linalg.norm(self._nut() - place)),
            "reward_ctrl": -0.01 * float(np.sum(np.square(action))),
            "reward_success": float(self._is_success()),
        }

    def _is_success(self):
        return self._on_peg(0.03)

    def _expert(self):
        grip, nut, peg = self.eef_pos(), self._nut(), self._peg()
        grip_yaw, nut_yaw = yaw_of(self.eef_rot()), self._nut_yaw()
        if self._on_peg(PEG_TOP - 0.01):  # around the peg: let go, it slides down
            return self.servo(np.array([grip[0], grip[1], grip[2] + 0.05]), None, -1.0)
        handle = self._handle()
        if (
            not self.holding(handle, HANDLE_WIDTH)
            or nut[2] < NUT_HALF_Z + 0.005
            and (np.linalg.norm(nut[:2] - peg[:2]) > 0.03)
        ):
            # fingers across the handle (the grip's x along it), whichever way is nearer
            yaw = _wrap(nut_yaw)
            if abs(_wrap(yaw - grip_yaw)) > np.pi / 2:
                yaw = _wrap(yaw + np.pi)
            if abs(yaw) > np.pi / 2 + 0.3:  # stay within the wrist's comfortable range
                yaw = _wrap(yaw + np.pi)
            return self.grasp_and_lift(handle, yaw, HANDLE_WIDTH, lift_to=CARRY_NUT + 0.04)
        # held: turn the nut to the nearest yaw that fits the peg (mod 90), keeping the
        # wrist within +-(pi/2 + 0.3) of home, and carry its centre over the peg
        turns = [nut_yaw + _wrap(self._peg_yaw() + k * np.pi / 2 - nut_yaw) for k in range(4)]
        turns = [t for t in turns if abs(_wrap(grip_yaw + t - nut_yaw)) < np.pi / 2 + 0.3]
        target_yaw = min(turns, key=lambda t: abs(t - nut_yaw))
        grip_local = _rot2(-nut_yaw) @ (grip[:2] - nut[:2])
        grip_xy = peg[:2] + _rot2(target_yaw) @ grip_local
        up = grip[2] - nut[2]
        xy_err = float(np.linalg.norm(nut[:2] - peg[:2]))
        yaw_err = abs(target_yaw - nut_yaw)
        # line up within 4 mm and 3 degrees at the carry height; once on the way down, keep
        # going within 8 mm (the ring's chamfer-free edge finds the peg from there)
        descending = nut[2] < CARRY_NUT - 0.015
        if xy_err > (0.008 if descending else 0.004) or yaw_err > (0.08 if descending else 0.05):
            nut_z = CARRY_NUT if nut[2] < CARRY_NUT - 0.01 or xy_err > 0.02 else nut[2]
            target = np.r_[grip_xy, nut_z + up]
        else:
            target = np.r_[grip_xy, PEG_TOP - 0.03 + up]  # down around the peg
        return self.servo(target, _wrap(grip_yaw + target_yaw - nut_yaw), 1.0, gain=4.0)
