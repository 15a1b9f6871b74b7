"""``iltk/Push-v0``: a planar pusher pushes a block into a target region.

- **Action space**: ``Box(-1, 1, (2,))``, pusher planar velocity command (scaled to 0.3 m/s).
- **Observation** (``state``, 17): pusher xy (2), pusher xy velocity (2), block xy (2),
  block yaw as (cos, sin) (2), goal xy (2), block speed (1), block minus pusher (2), goal
  minus block (2), and the pusher relative to the block in the frame of the block-goal
  line, (along, lateral) (2): the coordinates the pushing decisions are made in. With them
  MLP BC on 100 demos succeeds 95% of the time, without them 67% (one seed, 100 episodes).
- **Reward terms** (``info``): ``reward_block_goal`` = -distance block to goal,
  ``reward_pusher_block`` = -0.1 * distance pusher to block, ``reward_ctrl`` =
  -0.01 * |action|^2, ``reward_success`` = 1 when successful.
- **Success**: the block centre is within 0.03 m of the goal centre.
- **Episode end**: success (``terminate_on_success``) or 200 steps (10 s at 20 Hz).

Contact-rich: the block turns when pushed off its centre line, so small errors compound.
"""

from __future__ import annotations

import numpy as np

from iltk.envs.base import MujocoTaskEnv

PUSHER_RADIUS = 0.02
BLOCK_HALF = 0.04
CLEAR = 0.1  # distance from the block centre that clears any block yaw plus the pusher
# the layout that init_spread < 1 draws around (block yaw 0)
NOMINAL_BLOCK = np.array([0.0, 0.0])
NOMINAL_GOAL = np.array([0.14, 0.1])
NOMINAL_PUSHER = np.array([-0.2, -0.2])


class PushEnv(MujocoTaskEnv):
    __doc__ = __doc__
    xml_file = "push.xml"
    default_camera = "top"
    action_dim = 2
    state_dim = 17
    max_speed = 0.3
    success_radius = 0.03

    def _reset_task(self, rng):
        block = self._draw(rng, -0.15, 0.15, NOMINAL_BLOCK)
        goal = self._draw(rng, -0.2, 0.2, NOMINAL_GOAL)
        while np.linalg.norm(goal - block) < 0.12:
            goal = self._draw(rng, -0.2, 0.2, NOMINAL_GOAL)
        pusher = self._draw(rng, -0.3, 0.3, NOMINAL_PUSHER)
        while np.linalg.norm(pusher - block) < 0.12:
            pusher = self._draw(rng, -0.3, 0.3, NOMINAL_PUSHER)
        self.data.qpos[0:2] = pusher
        self.data.qpos[2:4] = block
        self.data.qpos[4] = self._draw(rng, -np.pi, np.pi, 0.0)
        self._set_mocap("goal", [goal[0], goal[1], 0.001])

    heatmap_label = "block x, y (pusher behind it on the block-goal line)"
    heatmap_obs_xy = slice(4, 6)

    def heatmap_extent(self):
        g = self._goal()
        return (g[0] - 0.25, g[0] + 0.25, g[1] - 0.25, g[1] + 0.25)

    def _heatmap_place(self, xy):
        to_goal = self._goal() - xy
        d = to_goal / max(float(np.linalg.norm(to_goal)), 1e-6)
        self.data.qpos[2:4] = xy
        self.data.qpos[0:2] = xy - d * (BLOCK_HALF + PUSHER_RADIUS + 0.005)

    def _apply_action(self, action):
        self.data.ctrl[:] = action * self.max_speed

    def _pusher(self):
        return self.data.qpos[0:2].copy()

    def _block(self):
        return self.data.qpos[2:4].copy()

    def _goal(self):
        return self.data.mocap_pos[0, :2].copy()

    def _state_obs(self):
        yaw = self.data.qpos[4]
        return np.concatenate(
            [
                self._pusher(),
                self.data.qvel[0:2],
                self._block(),
                [np.cos(yaw), np.sin(yaw)],
                self._goal(),
                [np.linalg.norm(self.data.qvel[2:4])],
                self._block() - self._pusher(),
                self._goal() - self._block(),
                self._pusher_in_push_frame(),
            ]
        )

    def _pusher_in_push_frame(self):
        """The pusher relative to the block in the frame of the block-goal line: (along, lateral)."""
        to_goal = self._goal() - self._block()
        d = to_goal / max(float(np.linalg.norm(to_goal)), 1e-6)
        rel = self._pusher() - self._block()
        return np.array([rel @ d, rel @ np.array([-d[1], d[0]])])

    def _reward_terms(self, action):
        return {
            "reward_block_goal": -float(np.linalg.norm(self._block() - self._goal())),
            "reward_pusher_block": -0.1 * float(np.linalg.norm(self._pusher() - self._block())),
            "reward_ctrl": -0.01 * float(np.sum(np.square(action))),
            "reward_success": float(self._is_success()),
        }

    def _is_success(self):
        return bool(np.linalg.norm(self._block() - self._goal()) < self.success_radius)

    def expert_action(self):
        """Walk around the block to a point behind it on the block-goal line, then push.

        Navigation keeps outside a clearance disc around the block (radius ``CLEAR``),
        circling it counter-clockwise; pushing steers the pusher back onto the line
        through the block centre, so a turned block is corrected or re-approached.
        """
        pusher, block, goal = self._pusher(), self._block(), self._goal()
        to_goal = goal - block
        dist = float(np.linalg.norm(to_goal))
        d = to_goal / max(dist, 1e-6)
        n = np.array([-d[1], d[0]])
        rel = pusher - block
        along, lat = float(rel @ d), float(rel @ n)
        if along < -0.03 and abs(lat) < 0.03:
            speed = float(np.clip(dist * 8.0, 0.25, 1.0))
            command = d * speed - n * lat * 25.0
        else:
            approach = block - d * (CLEAR + 0.03)
            r = float(np.linalg.norm(rel))
            if r > CLEAR and not _segment_hits_disc(pusher, approach, block, CLEAR):
                command = (approach - pusher) * 15.0
            else:
                radial = rel / max(r, 1e-6)
                # always counter-clockwise: choosing the shorter side would make the field
                # jump where both sides are equally short (pusher in front of the block),
                # and a learner that averages the two there stalls in front of the block
                tangent = np.array([-radial[1], radial[0]])
                command = tangent + radial * (CLEAR + 0.02 - r) * 20.0
        norm = np.linalg.norm(command)
        if norm > 1.0:
            command = command / norm
        return command.astype(np.float32)


def _segment_hits_disc(a: np.ndarray, b: np.ndarray, centre: np.ndarray, radius: float) -> bool:
    ab = b - a
    t = np.clip(((centre - a) @ ab) / max(ab @ ab, 1e-12), 0.0, 1.0)
    return bool(np.linalg.norm(a + t * ab - centre) < radius)
