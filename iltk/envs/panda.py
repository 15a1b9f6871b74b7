"""The Franka Emika Panda under Cartesian control: what every ``iltk/Panda*-v0`` task shares.

The arm is the Panda that ``gymnasium-robotics`` ships (its MJCF and meshes are read from the
installed package, nothing is copied here or downloaded), mounted on a table whose top is
z = 0, with the scene of ``assets/panda_scene.xml`` and each task's objects placed into it.

Control. An action in ``action_mode="cartesian"`` (the default) is an end-effector pose
velocity and a gripper command, all in [-1, 1]: ``(vx, vy, vz)`` scaled to
``MAX_SPEED`` m/s, ``(wx, wy, wz)`` an axis-angle rate in the world frame scaled to
``MAX_ROT`` rad/s, and the gripper (-1 open ... +1 closed). The commanded pose moves by
one control step of that velocity, is clamped into the workspace box and to at most
``MAX_TILT`` from pointing straight down, and differential inverse kinematics (``mink``: a
QP with the joint limits as constraints and a posture task for the redundant joint) turns
it into joint position targets for the arm's position servos. The commanded joint
configuration is the actuators' ``ctrl``, so it is part of MuJoCo's state vector and exact
replay needs nothing else. ``action_mode="joint"`` takes 7 joint velocities (scaled to
``MAX_JOINT_SPEED`` rad/s) and the gripper instead; a joint step that would carry the
gripper out of the workspace box or past the tilt limit is shortened until it does not.

Whatever the action (scripted, learned, human, noisy), the commanded pose stays inside
the workspace box above the table and the joint limits hold; a target the arm cannot
reach (blocked by an object, or outside what the joints allow) is clamped, never
integrated: the command is pulled back towards the arm's actual pose when the two part
by more than ``MAX_LAG``.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import mujoco
import numpy as np
from gymnasium import spaces

from iltk.envs.base import ASSETS, MujocoTaskEnv

ACTION_MODES = ("cartesian", "joint")
MAX_SPEED = 0.25  # m/s of the commanded end-effector position at |action| = 1
MAX_ROT = 1.5  # rad/s of the commanded end-effector orientation at |action| = 1
MAX_JOINT_SPEED = 2.0  # rad/s of each commanded joint in action_mode="joint" (Panda: 2.2-2.6)
MAX_TILT = 0.7  # rad: how far the gripper may tilt from pointing straight down
MAX_LAG = 0.04  # m: the command is pulled back when the arm is this far behind it
MAX_ROT_LAG = 0.35  # rad: the same for the orientation
FINGER_OPEN = 0.04  # each finger's travel (the fingers' joint range is [0, 0.04])
# the workspace of the grip site (table top at z = 0; at z = 0.05 the fingertips clear it)
WORKSPACE_LOW = np.array([-0.3, -0.35, 0.05])
WORKSPACE_HIGH = np.array([0.3, 0.35, 0.45])
N_ARM = 7
GRASP_DEPTH = 0.03  # the grip site this far above an object's grasp point when grasping
# joint configuration at the start of every episode: gripper pointing down at (0, 0, 0.2),
# fingers along world y (found by the IK from a bent-elbow guess)
HOME_Q = np.array([0.0, 0.2014, 0.0, -2.1638, 0.0003, 0.7952, 0.0003])
ARM_DAMPING = 40.0  # joints 1-4: near critical damping of their 870 N m/rad servos
GRIP_SITE = "end_effector"  # the model's site between the finger pads, axes along the fingers
GRIP_SITE_Z = 0.21  # its offset along the hand (link7) axis


PANDA_WHITE = [0.93, 0.93, 0.92, 1.0]
PANDA_HAND = [0.85, 0.85, 0.86, 1.0]


class MissingRobotModelError(RuntimeError):
    """The package that ships the Panda's MJCF is not installed."""


@functools.cache
def franka_assets() -> Path:
    """The folder of the Panda MJCF and meshes inside the installed gymnasium-robotics."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or not spec.submodule_search_locations:
        raise MissingRobotModelError(
            "the Panda tasks need the robot model that gymnasium-robotics ships: "
            "pip install 'gymnasium-robotics==1.4.2' (a dependency of iltk)"
        )
    root = Path(spec.submodule_search_locations[0]) / "envs/assets/kitchen_franka/franka_assets"
    if not (root / "chain.xml").is_file():
        raise MissingRobotModelError(f"no Panda MJCF at {root}: reinstall gymnasium-robotics")
    return root


def scene_xml(name: str, objects_file: str | None) -> str:
    """The MJCF of a Panda scene: the shared scene with a task's objects placed into it."""
    objects = (ASSETS / objects_file).read_text() if objects_file else ""
    template = (ASSETS / "panda_scene.xml").read_text()
    return template.format(name=name, franka=franka_assets(), objects=objects)


def compile_scene(xml: str) -> mujoco.MjModel:
    """Compile a Panda scene, with the arm gravity-compensated (as the real Panda's
    controller does), its shoulder joints damped near critically, and robosuite's
    eye-in-hand camera on the hand."""
    spec = mujoco.MjSpec.from_string(xml)
    for body in spec.bodies:
        if body.name.startswith("panda0"):
            body.gravcomp = 1.0
    # The visual meshes (136k triangles) cost a software-rendered frame 0.25 s; the
    # collision meshes (200-300 triangles a link) are the shape the physics uses, and
    # drawn in the Panda's white they render at the other tasks' rates.
    for geom in list(spec.geoms):
        if geom.meshname.endswith("_viz") and geom.meshname != "finger_viz":
            spec.delete(geom)
        elif geom.meshname.endswith("_col"):
            geom.group = 0
            geom.rgba = PANDA_WHITE if geom.meshname != "hand_col" else PANDA_HAND
    for mesh in list(spec.meshes):
        if mesh.name.endswith("_viz") and mesh.name != "finger_viz":
            spec.delete(mesh)
    pos, quat = _eye_in_hand_pose()
    spec.body("panda0_link7").add_camera(name="robot0_eye_in_hand", pos=pos, quat=quat, fovy=75)
    model = spec.compile()
    model.dof_damping[:4] = ARM_DAMPING
    return model


def _eye_in_hand_pose() -> tuple[list[float], list[float]]:
    """The eye-in-hand camera in the hand's (link7's) frame: 12 cm above the grip site and
    5 cm ahead of it, looking down between the fingers, image up = the grip frame's x."""
    site_rot = np.zeros(9)
    site_quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(site_quat, np.array([0.0, 0.0, 1.0]), -np.pi / 4)
    mujoco.mju_quat2Mat(site_rot, site_quat)
    site_rot = site_rot.reshape(3, 3)
    # camera axes in the grip frame: x_cam = y, y_cam = x, z_cam = -z (it looks along +z)
    cam_in_site = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    mat = site_rot @ cam_in_site
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    pos = np.array([0.0, 0.0, GRIP_SITE_Z]) + site_rot @ np.array([0.05, 0.0, -0.12])
    return pos.tolist(), quat.tolist()


def _axis_angle_matrix(w: np.ndarray) -> np.ndarray:
    """The rotation matrix of the axis-angle vector ``w``."""
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, w / (np.linalg.norm(w) or 1.0), float(np.linalg.norm(w)))
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle (world frame) that rotates ``current`` onto ``target`` (3x3 matrices)."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).reshape(-1))
    err = np.zeros(3)
    mujoco.mju_quat2Vel(err, quat, 1.0)
    return err


def clamp_tilt(rot: np.ndarray, max_tilt: float = MAX_TILT) -> np.ndarray:
    """``rot`` with its approach axis (z) tilted at most ``max_tilt`` from straight down."""
    z = rot[:, 2]
    down = np.array([0.0, 0.0, -1.0])
    tilt = float(np.arccos(np.clip(z @ down, -1.0, 1.0)))
    if tilt <= max_tilt:
        return rot
    axis = np.cross(z, down)
    norm = np.linalg.norm(axis)
    axis = axis / norm if norm > 1e-9 else np.array([1.0, 0.0, 0.0])
    return _axis_angle_matrix(axis * (tilt - max_tilt)) @ rot


def yaw_of(rot: np.ndarray) -> float:
    """Yaw of a grip frame: the angle of its x axis in the table plane."""
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def quat_xyzw(mat: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.asarray(mat).reshape(-1))
    return np.array([quat[1], quat[2], quat[3], quat[0]])


class DifferentialIK:
    """Joint targets for a commanded grip-site pose, by ``mink``'s differential IK.

    It works on a model of the arm alone (the scene without objects, same joint order), so
    objects' free joints never enter the QP.
    """

    def __init__(self, model: mujoco.MjModel, dt: float):
        import mink

        self.mink = mink
        self.model = model
        self.dt = dt
        self.configuration = mink.Configuration(model)
        self.frame = mink.FrameTask(GRIP_SITE, "site", position_cost=1.0, orientation_cost=0.5)
        self.posture = mink.PostureTask(model, cost=1e-2)
        home = np.zeros(model.nq)
        home[:N_ARM] = HOME_Q
        home[N_ARM : N_ARM + 2] = FINGER_OPEN
        self.posture.set_target(home)
        self.limits = [mink.ConfigurationLimit(model)]
        self.tasks = [self.frame, self.posture]
        self._at: np.ndarray | None = None  # the arm joints the configuration is at

    def _update(self, q_arm: np.ndarray) -> None:
        # a control step asks for the same configuration several times: compute it once
        if self._at is not None and np.array_equal(self._at, q_arm):
            return
        q = self.configuration.q.copy()
        q[:N_ARM] = q_arm
        self.configuration.update(q)
        self._at = np.array(q_arm, dtype=np.float64)

    def forward(self, q_arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grip-site position and rotation matrix at arm joints ``q_arm``."""
        self._update(q_arm)
        site = self.configuration.data.site(GRIP_SITE)
        return site.xpos.copy(), site.xmat.reshape(3, 3).copy()

    def solve(self, q_arm: np.ndarray, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
        """Arm joints one control step from ``q_arm`` towards the pose (pos, rot)."""
        self._update(q_arm)
        target = self.mink.SE3.from_rotation_and_translation(self.mink.SO3.from_matrix(rot), pos)
        self.frame.set_target(target)
        velocity = self.mink.solve_ik(
            self.configuration, self.tasks, self.dt, "daqp", damping=1e-3, limits=self.limits
        )
        return np.asarray(q_arm + velocity[:N_ARM] * self.dt)


@functools.cache
def _arm_model() -> mujoco.MjModel:
    return compile_scene(scene_xml("panda_arm", None))


class PandaTaskEnv(MujocoTaskEnv):
    """Base of the Panda tasks (see the module docstring for the control).

    Args:
        action_mode: "cartesian" (7: end-effector velocity, angular velocity, gripper)
            or "joint" (8: joint velocities, gripper).
        **kwargs: as :class:`~iltk.envs.base.MujocoTaskEnv` (``obs_mode``, ``init_spread``...).

    Observations follow robomimic's names: under ``obs_mode="state"`` a dict of
    ``robot0_eef_pos`` (3), ``robot0_eef_quat`` (4, x y z w as robosuite), ``robot0_gripper_qpos``
    (2) and ``object`` (the task's object features); ``"pixels"`` gives the cameras
    ``agentview`` and ``robot0_eye_in_hand`` (uint8, image_size square) and ``"state+pixels"``
    both.
    """

    default_camera = "front"  # videos and windows: the whole arm; observations: image_keys
    display_cameras = ("front", "agentview")
    objects_file: str = ""
    object_dim: int = 0
    image_keys = ("agentview", "robot0_eye_in_hand")

    def __init__(self, action_mode: str = "cartesian", **kwargs):
        if action_mode not in ACTION_MODES:
            raise ValueError(
                f"action_mode must be one of {ACTION_MODES} (cartesian: end-effector "
                f"velocity + gripper; joint: 7 joint velocities + gripper), got {action_mode!r}"
            )
        self.action_mode = action_mode
        self.action_dim = 7 if action_mode == "cartesian" else 8
        self.state_dim = 9 + self.object_dim
        super().__init__(**kwargs)
        self.action_space = spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.ik = DifferentialIK(_arm_model(), 1.0 / self.control_freq)
        self._grip_id = self.model.site(GRIP_SITE).id
        self._target_id = self.model.body("ee_target").mocapid[0]
        low = {
            "robot0_eef_pos": 3,
            "robot0_eef_quat": 4,
            "robot0_gripper_qpos": 2,
            "object": self.object_dim,
        }
        lowdim = {k: spaces.Box(-np.inf, np.inf, (n,), np.float32) for k, n in low.items()}
        pixels = {
            k: spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
            for k in self.image_keys
        }
        if self.obs_mode == "state":
            self.observation_space = spaces.Dict(lowdim)
        elif self.obs_mode == "pixels":
            self.observation_space = spaces.Dict(pixels)
        else:
            self.observation_space = spaces.Dict({**lowdim, **pixels})

    def _load_model(self) -> mujoco.MjModel:
        return compile_scene(self.model_xml())

    def model_xml(self) -> str:
        return scene_xml(type(self).__name__, self.objects_file)

    # ------------------------------------------------------------- the robot
    def _reset_robot(self) -> None:
        self.data.qpos[:N_ARM] = HOME_Q
        self.data.qpos[N_ARM : N_ARM + 2] = FINGER_OPEN
        self.data.ctrl[:N_ARM] = HOME_Q
        self.data.ctrl[N_ARM : N_ARM + 2] = FINGER_OPEN
        self._show_command()

    def _place_upright(self, joint: str, xy, z: float, yaw: float) -> None:
        """Put a free body standing on the table: centre at (x, y, z), turned by ``yaw``."""
        adr = self.model.joint(joint).qposadr[0]
        self.data.qpos[adr : adr + 3] = [xy[0], xy[1], z]
        self.data.qpos[adr + 3 : adr + 7] = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]

    def _show_command(self) -> None:
        pos, rot = self.ik.forward(self.data.ctrl[:N_ARM])
        self.data.mocap_pos[self._target_id] = pos
        mujoco.mju_mat2Quat(self.data.mocap_quat[self._target_id], rot.reshape(-1))

    def _cartesian_command(self, action: np.ndarray) -> np.ndarray:
        """Arm joint targets for a Cartesian action from the current command."""
        dt = 1.0 / self.control_freq
        command = self.data.ctrl[:N_ARM].copy()
        pos, rot = self.ik.forward(command)
        actual_pos, actual_rot = self.eef_pos(), self.eef_rot()
        # never integrate a target the arm does not follow: start from the actual pose
        # when the command has run ahead of it (blocked by contact, or out of reach)
        lag = pos - actual_pos
        if np.linalg.norm(lag) > MAX_LAG:
            pos = actual_pos + MAX_LAG * lag / np.linalg.norm(lag)
        if np.linalg.norm(rotation_error(rot, actual_rot)) > MAX_ROT_LAG:
            rot = actual_rot
        pos = np.clip(pos + action[:3] * MAX_SPEED * dt, WORKSPACE_LOW, WORKSPACE_HIGH)
        rot = clamp_tilt(_axis_angle_matrix(action[3:6] * MAX_ROT * dt) @ rot)
        # the IK's one QP step lands within a few mm of the clamped pose; the step is then
        # shortened where that would leave the box
        return self._inside_step(command, self.ik.solve(command, pos, rot) - command)

    def _joint_command(self, action: np.ndarray) -> np.ndarray:
        """Arm joint targets for a joint-velocity action."""
        command = self.data.ctrl[:N_ARM].copy()
        return self._inside_step(command, action[:N_ARM] * MAX_JOINT_SPEED / self.control_freq)

    def _inside_step(self, command: np.ndarray, step: np.ndarray) -> np.ndarray:
        """``command + step`` within the joint ranges, the step halved (up to four times,
        else no motion) where it would take the grip out of the workspace box or past the
        tilt limit. A command already outside (the start of a replayed foreign state) may
        move back in."""
        low, high = self.model.jnt_range[:N_ARM].T

        def outside(q):
            pos, rot = self.ik.forward(q)
            over = np.maximum(WORKSPACE_LOW - pos, 0) + np.maximum(pos - WORKSPACE_HIGH, 0)
            tilt = float(np.arccos(np.clip(-rot[2, 2], -1.0, 1.0)))
            return float(over.sum()) + max(tilt - MAX_TILT, 0.0)

        before = None
        for _ in range(5):
            candidate = np.clip(command + step, low, high)
            after = outside(candidate)
            if after <= 1e-9:
                return candidate
            before = outside(command) if before is None else before
            if after < before:
                return candidate
            step = step * 0.5
        return command

    def _apply_action(self, action):
        if self.action_mode == "cartesian":
            command = self._cartesian_command(action)
        else:
            command = self._joint_command(action)
        self.data.ctrl[:N_ARM] = command
        self.data.ctrl[N_ARM : N_ARM + 2] = FINGER_OPEN * (1.0 - action[-1]) / 2.0
        self._show_command()

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action (any state), in this env's action mode: in joint
        mode, the joint velocities that the Cartesian expert's command amounts to."""
        action = np.clip(self._expert(), -1.0, 1.0).astype(np.float32)
        if self.action_mode == "cartesian":
            return action
        q = self._cartesian_command(action)
        velocity = (q - self.data.ctrl[:N_ARM]) * self.control_freq / MAX_JOINT_SPEED
        velocity /= max(1.0, float(np.abs(velocity).max()))  # slower, same direction
        return np.concatenate([velocity, action[-1:]]).astype(np.float32)

    def _expert(self) -> np.ndarray:
        """The task's Cartesian expert action in the current state."""
        raise NotImplementedError

    def eef_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._grip_id].copy()

    def eef_rot(self) -> np.ndarray:
        return self.data.site_xmat[self._grip_id].reshape(3, 3).copy()

    def gripper_opening(self) -> float:
        """Gap between the fingers' pads (0 closed, 0.08 fully open)."""
        return float(self.data.qpos[N_ARM] + self.data.qpos[N_ARM + 1])

    def _object_obs(self) -> np.ndarray:
        raise NotImplementedError

    def _state_obs(self) -> np.ndarray:
        # the concatenation of the low-dim keys, in their order (heatmaps, tests)
        return np.concatenate([v for v in self._lowdim_obs().values()])

    def _lowdim_obs(self) -> dict[str, np.ndarray]:
        return {
            "robot0_eef_pos": self.eef_pos().astype(np.float32),
            "robot0_eef_quat": quat_xyzw(self.eef_rot()).astype(np.float32),
            "robot0_gripper_qpos": self.data.qpos[N_ARM : N_ARM + 2].astype(np.float32),
            "object": self._object_obs().astype(np.float32),
        }

    def _obs(self):
        out: dict[str, np.ndarray] = {}
        if "state" in self.obs_mode:
            out.update(self._lowdim_obs())
        if "pixels" in self.obs_mode:
            for key in self.image_keys:
                out[key] = self.render_frame(self.image_size, self.image_size, camera=key)
        return out

    # -------------------------------------------------------- expert helpers
    def holding(self, point: np.ndarray, width: float) -> bool:
        """Whether the fingers are closed on an object of ``width`` whose grasp point is
        ``point`` (between the pads)."""
        opening = self.gripper_opening()
        grip = self.eef_pos()
        return (
            width - 0.012 < opening < width + 0.006
            and float(np.linalg.norm(point[:2] - grip[:2])) < 0.02
            and abs(grip[2] - grasp_height(point)) < 0.02
        )

    def grasp_and_lift(
        self, point: np.ndarray, yaw: float | None, width: float, lift_to: float
    ) -> np.ndarray:
        """Hover over ``point`` (an object's grasp point), line the fingers up (``yaw``, or
        any when None), descend open, close, and lift to ``lift_to`` once held: a function
        of the current state only, so it labels states off its own path too (it re-opens
        and re-aligns after a slip)."""
        grip, grip_yaw = self.eef_pos(), yaw_of(self.eef_rot())
        yaw_err = 0.0 if yaw is None else abs(yaw - grip_yaw)
        xy_err = float(np.linalg.norm(point[:2] - grip[:2]))
        grasp_z = grasp_height(point)
        hover = point[2] + 0.1
        opening = self.gripper_opening()
        if self.holding(point, width):
            return self.servo(np.array([point[0], point[1], lift_to]), yaw, 1.0, gain=5.0)
        aligned = xy_err < 0.01 and yaw_err < 0.08
        if aligned and abs(grip[2] - grasp_z) < 0.008:
            return self.servo(np.array([point[0], point[1], grasp_z]), yaw, 1.0)  # close
        if aligned and opening > width + 0.015:
            return self.servo(np.array([point[0], point[1], grasp_z]), yaw, -1.0)  # descend
        # over the object at the hover height, fingers open; rise first when low and far
        if grip[2] < hover - 0.03 and xy_err > 0.02:
            return self.servo(np.array([grip[0], grip[1], hover]), yaw, -1.0)
        z = hover if xy_err > 0.02 or grip[2] > hover else grip[2]
        return self.servo(np.array([point[0], point[1], z]), yaw, -1.0)

    def servo(
        self,
        pos: np.ndarray,
        yaw: float | None,
        gripper: float,
        gain: float = 10.0,
        rot_gain: float = 4.0,
    ) -> np.ndarray:
        """The action that moves the grip site to ``pos`` (pointing down, at ``yaw`` if
        given, else keeping the current yaw) with the gripper command ``gripper``."""
        action = np.zeros(7, np.float32)  # Cartesian, whatever the env's action mode
        action[:3] = np.clip(gain * (pos - self.eef_pos()) / MAX_SPEED, -1, 1)
        current = self.eef_rot()
        yaw = yaw_of(current) if yaw is None else yaw
        c, s = np.cos(yaw), np.sin(yaw)
        target = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])
        action[3:6] = np.clip(rot_gain * rotation_error(target, current) / MAX_ROT, -1, 1)
        action[6] = gripper
        return action


def grasp_height(point: np.ndarray) -> float:
    """The grip site's height when grasping at ``point``: ``GRASP_DEPTH`` above it, or as
    low as the workspace allows (the fingertips then reach 5 cm below the site)."""
    return max(float(point[2]) + GRASP_DEPTH, float(WORKSPACE_LOW[2]) + 0.003)


def box_yaw(quat_wxyz: np.ndarray) -> float:
    """Yaw of a body standing upright on the table, from its (w, x, y, z) quaternion."""
    mat = quat_mat(quat_wxyz)
    return float(np.arctan2(mat[1, 0], mat[0, 0]))


def quat_mat(quat_wxyz: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat_wxyz, np.float64))
    return mat.reshape(3, 3)


def nearest_grasp_yaw(object_yaw: float, current_yaw: float, symmetry: float) -> float:
    """The grasp yaw closest to ``current_yaw`` among ``object_yaw + k * symmetry``, kept
    within the wrist's comfortable range (+-pi/2 of the home yaw)."""
    k = np.round((current_yaw - object_yaw) / symmetry)
    yaw = float(object_yaw + k * symmetry)
    while yaw > np.pi / 2 + 1e-6:
        yaw -= symmetry
    while yaw < -np.pi / 2 - 1e-6:
        yaw += symmetry
    return yaw
