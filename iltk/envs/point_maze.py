"""``iltk/PointMaze-v0``: a planar point mass goes around a wall to reach a goal.

- **Action space**: ``Box(-1, 1, (2,))``, planar velocity command (scaled to 0.6 m/s).
- **Observation** (``state``, 6): agent xy position (2), goal xy (2), goal minus agent (2).
  No velocity: under velocity control it is the last command, and learners given it copy
  their previous action instead of steering (the "copycat" problem; with velocity in the
  observation a GMM-head BC policy succeeded 25% of the time, without it 100%, 100 demos).
- **Reward terms** (``info``): ``reward_dist`` = -distance to goal, ``reward_ctrl`` =
  -0.01 * |action|^2, ``reward_success`` = 1 when successful.
- **Success**: the agent centre is within 0.05 m of the goal.
- **Episode end**: success (``terminate_on_success``) or 150 steps (7.5 s at 20 Hz).

Starts are drawn on the left of a wall that spans y in [-0.3, 0.3], goals on the right.
The scripted expert goes around the wall above or below it: within ``SIDE_BAND`` of the wall's
centre line (where every start lies) on a side drawn at random each episode, beyond it on
the agent's side. Demonstrations are therefore truly bimodal (from the same state half of
them go up, half down): the test bed for mode averaging, whose average heads straight
into the wall. (Yet a deterministic MLP escapes it, presumably by tying the side to the
start and goal positions it saw: 99-100% success, like the GMM head, with 100 demos.)
``expert_side="start"`` makes the expert deterministic instead: it takes the side of the
start's y (above the centre line: above the wall), one mode per state, the same dynamics,
starts and success test.

Queried where someone else (a learner under DAgger, a person) has taken the agent more than
``FOLLOW_MARGIN`` from its start towards the other side, the expert follows that side
instead of labelling a U-turn; its own episodes never get there, so demonstrations are
unchanged. With the drawn side alone, 12% of DAgger's labels pointed back across the wall
and its success fell over rounds (``benchmarks/RESULTS.md``, PointMaze).
"""

from __future__ import annotations

import numpy as np

from iltk.envs.base import MujocoTaskEnv, velocity_toward

WALL_HALF_Y = 0.3
VIA_Y = 0.55  # y of the via point beside the wall: wall edge 0.3 + agent radius 0.05 + 0.2,
# so the straight line from any start clears the wall's corner by 3.6 cm or more (at 0.47
# the worst start's line cut the corner by 0.7 cm)
SIDE_BAND = 0.2  # within this |y| the expert keeps the side it drew for the episode...
FOLLOW_MARGIN = 0.05  # ...unless the agent is this far from its start towards the other side
NOMINAL_START = (-0.8, 0.05)  # the layout that init_spread < 1 draws around
NOMINAL_GOAL = (0.8, -0.05)


EXPERT_SIDES = ("random", "start")


class PointMazeEnv(MujocoTaskEnv):
    __doc__ = __doc__
    xml_file = "point_maze.xml"
    default_camera = "top"
    action_dim = 2
    state_dim = 6
    max_speed = 0.6
    success_radius = 0.05

    def __init__(self, expert_side: str = "random", **kwargs):
        if expert_side not in EXPERT_SIDES:
            raise ValueError(
                f"expert_side must be one of {', '.join(EXPERT_SIDES)} (random: a side drawn "
                f"per episode, bimodal demos; start: the start's side), got {expert_side!r}"
            )
        self.expert_side = expert_side
        super().__init__(**kwargs)

    def _reset_task(self, rng):
        self.data.qpos[:2] = [
            self._draw(rng, -0.9, -0.65, NOMINAL_START[0]),
            self._draw(rng, -0.15, 0.15, NOMINAL_START[1]),
        ]
        goal = [
            self._draw(rng, 0.65, 0.9, NOMINAL_GOAL[0]),
            self._draw(rng, -0.2, 0.2, NOMINAL_GOAL[1]),
        ]
        self._set_mocap("goal", [goal[0], goal[1], 0.002])
        # the expert's side, in the sim state (userdata) so that set_state carries it
        drawn = rng.choice([-1.0, 1.0])  # drawn either way: the layouts stay the seed's
        start_side = 1.0 if self.data.qpos[1] >= 0 else -1.0
        self.data.userdata[0] = drawn if self.expert_side == "random" else start_side
        self.data.userdata[1] = self.data.qpos[1]  # the start's y, for the follow rule

    heatmap_label = "agent x, y"

    def heatmap_extent(self):
        return (-1.05, 1.05, -0.7, 0.7)  # inside the outer walls

    def _heatmap_place(self, xy):
        self.data.qpos[:2] = xy

    def _apply_action(self, action):
        self.data.ctrl[:] = action * self.max_speed

    def _agent(self):
        return self.data.qpos[:2].copy()

    def _goal(self):
        return self.data.mocap_pos[0, :2].copy()

    def _state_obs(self):
        return np.concatenate([self._agent(), self._goal(), self._goal() - self._agent()])

    def _reward_terms(self, action):
        return {
            "reward_dist": -float(np.linalg.norm(self._agent() - self._goal())),
            "reward_ctrl": -0.01 * float(np.sum(np.square(action))),
            "reward_success": float(self._is_success()),
        }

    def _is_success(self):
        return bool(np.linalg.norm(self._agent() - self._goal()) < self.success_radius)

    def expert_action(self):
        pos, goal = self._agent(), self._goal()
        if pos[0] < 0.0:
            # Still left of the wall's centre: head for the via point on this side.
            if abs(pos[1]) < SIDE_BAND:
                side = 1.0 if self.data.userdata[0] >= 0 else -1.0
                # Taken the other way (by a learner or a person, never by the expert itself,
                # whose y only moves towards its side): follow rather than turn back.
                if (pos[1] - self.data.userdata[1]) * side < -FOLLOW_MARGIN:
                    side = -side
            else:
                side = 1.0 if pos[1] >= 0 else -1.0
            target = np.array([0.02, side * VIA_Y])
            direction = target - pos
            return (direction / max(np.linalg.norm(direction), 1e-6)).astype(np.float32)
        return velocity_toward(pos, goal, gain=6.0).astype(np.float32)
