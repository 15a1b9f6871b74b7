"""Input devices: gamepad / joystick (through a mapping profile) and keyboard.

A device has ``connect()``, ``read(events) -> Command`` and ``close()``. Both devices are
driven purely by pygame events (``JOYAXISMOTION``, ``JOYBUTTONDOWN``, ``KEYDOWN``, ...): the
session polls the event queue once per control step and hands the events to the device,
which keeps its own axis, button and key state. So a timeline of posted events drives a
whole session headless, exactly as a physical pad would; only the hardware is untested.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pygame

# SDL drops joystick motion while none of the app's windows has focus; a person glancing at
# another window must not lose the pad (and headless sessions have no focus at all)
os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")

PROFILE_DIR = Path(__file__).parent / "profiles"
SESSION_EVENTS = ("save", "discard", "reset", "quit", "view")
ROTATIONS = ("roll", "pitch", "yaw")  # Command.rotation's order


class DeviceNotFound(RuntimeError):
    """No joystick / gamepad is plugged in."""


@dataclass
class Command:
    """What the person asks for at one control step.

    Attributes:
        motion: (3,) x, y, z velocity commands in [-1, 1].
        rotation: (3,) roll, pitch, yaw rate commands in [-1, 1] (about the world's x, y,
            z axes: the arm's end effector).
        gripper: -1 (open) ... +1 (closed).
        takeover: the takeover button is held (HG-DAgger).
        triggered: edge-triggered session events this step (save, discard, reset, quit).
        connected: the device is plugged in.
    """

    motion: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    rotation: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    gripper: float = -1.0
    takeover: bool = False
    fine: bool = False
    triggered: set[str] = field(default_factory=set)
    connected: bool = True

    @property
    def active(self) -> bool:
        """The person gives input this step: a direction, a closed gripper or a takeover.

        A DAgger label exists only at such steps; an idle device labels nothing.
        """
        moving = bool(np.any(self.motion != 0)) or bool(np.any(self.rotation != 0))
        return moving or self.gripper > -1.0 or self.takeover


def list_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """A mapping profile by name (xbox, playstation, generic) or JSON file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.json"
    if not path.exists():
        raise ValueError(
            f"unknown gamepad profile {name_or_path!r}; built in: {list_profiles()}, or a JSON file path"
        )
    try:
        profile = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    for key in ("axes", "buttons", "gripper"):
        if key not in profile:
            raise ValueError(f"{path}: profile lacks {key!r}")
    for name, spec in profile.get("rotation", {}).items():
        if name not in ROTATIONS or not ("axis" in spec or "hat" in spec or "buttons" in spec):
            raise ValueError(
                f"{path}: rotation {name!r} needs an 'axis', a 'hat' (and 'component' 0 or "
                f"1) or 'buttons' [positive, negative]; the rotations are {', '.join(ROTATIONS)}"
            )
    if profile.get("kind") == "controller":  # names of SDL's standard controller
        axes = [spec["axis"] for spec in profile["axes"].values()]
        axes += [s["axis"] for s in profile.get("rotation", {}).values() if "axis" in s]
        buttons = list(profile["buttons"].values())
        buttons += [b for s in profile.get("rotation", {}).values() for b in s.get("buttons", [])]
        if "axis" in profile["gripper"]:
            axes.append(profile["gripper"]["axis"])
        if "button" in profile["gripper"]:
            buttons.append(profile["gripper"]["button"])
        bad = [a for a in axes if a not in CONTROLLER_AXES]
        bad += [b for b in buttons if b not in CONTROLLER_BUTTONS]
        if bad:
            raise ValueError(
                f"{path}: a controller profile names SDL's axes ({', '.join(CONTROLLER_AXES)}) "
                f"and buttons ({', '.join(CONTROLLER_BUTTONS)}); unknown: {', '.join(map(str, bad))}"
            )
    elif any(isinstance(v, str) for v in profile["buttons"].values()):
        raise ValueError(
            f"{path}: this profile names buttons as SDL's controller does but lacks "
            '"kind": "controller" (a raw joystick profile numbers its axes and buttons)'
        )
    return profile


def check_profile_for_task(profile: dict[str, Any], action_dim: int, source: str = "") -> None:
    """Refuse, in one line, a pad profile that cannot drive a task: a 6-DoF task (7 action
    numbers: the arm) needs the three rotations."""
    if action_dim != 7:
        return
    missing = [r for r in ROTATIONS if r not in profile.get("rotation", {})]
    if missing:
        name = source or profile.get("name", "the profile")
        raise ValueError(
            f"{name}: this task is steered in 6-DoF (the arm) and the pad profile maps no "
            f'{", ".join(missing)}; add them under "rotation" (see teleop/profiles/xbox.json)'
        )


def profile_for(name: str, index: int | None = None) -> str:
    """The profile for a pad: ``controller`` (SDL's standard layout) when SDL's controller
    database knows the pad at ``index``, else the built-in raw profile whose ``match``
    words appear in its name, else ``generic``."""
    if index is not None:
        from pygame._sdl2 import controller

        controller.init()
        if controller.is_controller(index):
            return "controller"
    low = name.lower()
    for prof in list_profiles():
        if any(word in low for word in load_profile(prof).get("match", [])):
            return prof
    return "generic"


def apply_deadzone(value: float, deadzone: float) -> float:
    """Zero inside the deadzone, rescaled so the output still spans [-1, 1]."""
    if abs(value) <= deadzone:
        return 0.0
    return float(np.sign(value) * (abs(value) - deadzone) / (1.0 - deadzone))


def describe_joysticks() -> list[dict[str, Any]]:
    """The joysticks pygame sees: index, name, axes, buttons, hats, suggested profile."""
    pygame.joystick.init()
    out = []
    for i in range(pygame.joystick.get_count()):
        js = pygame.joystick.Joystick(i)
        out.append(
            {
                "index": i,
                "name": js.get_name(),
                "axes": js.get_numaxes(),
                "buttons": js.get_numbuttons(),
                "hats": js.get_numhats(),
                "profile": profile_for(js.get_name(), i),
            }
        )
    return out


class GamepadDevice:
    """A gamepad read through a mapping profile.

    Args:
        profile: profile dict (``load_profile``).
        index: joystick index to use.
        virtual: do not require hardware (tests post the events a pad would send).
    """

    kind = "gamepad"

    def __init__(self, profile: dict[str, Any], index: int = 0, virtual: bool = False):
        self.profile, self.index, self.virtual = profile, index, virtual
        # which controls table the window shows: the pad's, or a SpaceMouse's
        self.bindings = str(profile.get("bindings", "gamepad"))
        self.axes: dict[int, float] = {}
        self.buttons: dict[int, bool] = {}
        self.hats: dict[int, tuple[int, int]] = {}
        self._instance: int | None = None  # SDL instance id of the pad in use
        self.connected = False
        self.joystick = None
        self.name = "virtual pad" if virtual else ""
        self._gripper_toggle = False
        self._button_events = {v: k for k, v in profile["buttons"].items()}

    def connect(self) -> None:
        if self.virtual:
            self.connected = True
            return
        pygame.joystick.init()
        if pygame.joystick.get_count() <= self.index:
            raise DeviceNotFound(
                f"no gamepad at index {self.index} ({pygame.joystick.get_count()} found); "
                "plug one in or use --input keyboard"
            )
        joystick = pygame.joystick.Joystick(self.index)
        used = [int(spec["axis"]) for spec in self.profile["axes"].values()]
        used += [int(s["axis"]) for s in self.profile.get("rotation", {}).values() if "axis" in s]
        if "axis" in self.profile["gripper"]:
            used.append(int(self.profile["gripper"]["axis"]))
        if used and max(used) >= joystick.get_numaxes():
            raise DeviceNotFound(
                f"{joystick.get_name()!r} has {joystick.get_numaxes()} axes but the profile "
                f"{self.profile.get('name', '')!r} reads axis {max(used)}; pick another "
                "--profile (iltk record --list-devices) or check it with --calibrate"
            )
        self._check_layout(joystick)
        self.joystick = joystick
        self._instance = joystick.get_instance_id()
        self.name = joystick.get_name()
        self.connected = True

    def _check_layout(self, joystick) -> None:
        """Refuse a raw profile written for another layout: where SDL knows the pad, a stick
        role read from an axis SDL maps to a trigger (a trigger rests at -1, so the arm or
        the agent would move without the stick being touched)."""
        from pygame._sdl2 import controller

        controller.init()
        if not controller.is_controller(self.index):
            return
        mapping = controller.Controller(self.index).get_mapping()
        triggers = {
            int(str(mapping[k])[1:]): k
            for k in ("lefttrigger", "righttrigger")
            if str(mapping.get(k, "")).startswith("a")
        }
        roles = {f"move {k}": spec for k, spec in self.profile["axes"].items()}
        roles.update({k: s for k, s in self.profile.get("rotation", {}).items() if "axis" in s})
        for role, spec in roles.items():
            axis = int(spec["axis"])
            if axis in triggers:
                raise DeviceNotFound(
                    f"profile {self.profile.get('name', '')!r} reads {role} from axis {axis}, "
                    f"which SDL maps to the {triggers[axis]} of {joystick.get_name()!r}: it "
                    "was written for another layout; leave --profile unset (SDL's controller "
                    "mapping) or fix the profile (iltk record --calibrate)"
                )

    def close(self) -> None:
        self.joystick = None
        self.connected = False

    def new_episode(self) -> None:
        """A toggled gripper opens at every episode start (it never carries over)."""
        self._gripper_toggle = False

    def _axis(self, spec: dict[str, Any]) -> float:
        value = self.axes.get(self._key(spec["axis"]), 0.0)
        value = apply_deadzone(value, float(self.profile.get("deadzone", 0.1)))
        if spec.get("invert"):
            value = -value
        return float(np.clip(value * float(spec.get("scale", 1.0)), -1.0, 1.0))

    def _mine(self, ev) -> bool:
        """Whether an event comes from the pad in use (by SDL instance id). Device-added
        events carry a device index instead; they count while ours is unplugged."""
        if self.joystick is None or ev.type == pygame.JOYDEVICEADDED:
            return True
        instance = getattr(ev, "instance_id", None)
        if instance is None:
            return True
        if self._instance is None:
            self._instance = self.joystick.get_instance_id()
        return instance == self._instance

    def _rotation(self, name: str) -> float:
        spec = self.profile.get("rotation", {}).get(name)
        if spec is None:
            return 0.0
        if "axis" in spec:
            return self._axis(spec)
        if "buttons" in spec:  # [positive, negative], e.g. the D-pad's right and left
            pos, neg = (self.buttons.get(self._key(b), False) for b in spec["buttons"])
            return float(pos) - float(neg)
        value = float(self.hats.get(int(spec["hat"]), (0, 0))[int(spec.get("component", 0))])
        return -value if spec.get("invert") else value

    def read(self, events: list) -> Command:
        cmd = Command()
        self._consume(events, cmd)
        cmd.connected = self.connected
        if not self.connected:
            return cmd
        return self._command(cmd)

    def _consume(self, events: list, cmd: Command) -> None:
        """Apply the pad's events (plugging, axes, buttons, hats) to the device state."""
        for ev in events:
            if not self._mine(ev):
                continue  # another pad's: plugging, unplugging or moving it changes nothing
            if ev.type == pygame.JOYDEVICEREMOVED:
                self.connected = False
                self.axes.clear()
                self.buttons.clear()
                self.hats.clear()
            elif ev.type == pygame.JOYDEVICEADDED:
                if self.connected:
                    continue  # another pad plugged in while ours works
                if not self.virtual:
                    try:
                        self.connect()
                    except DeviceNotFound:
                        continue
                self.connected = True
            elif ev.type == pygame.JOYAXISMOTION:
                self.axes[int(ev.axis)] = float(ev.value)
            elif ev.type == pygame.JOYHATMOTION:
                self.hats[int(ev.hat)] = tuple(int(v) for v in ev.value)
            elif ev.type in (pygame.JOYBUTTONDOWN, pygame.JOYBUTTONUP):
                down = ev.type == pygame.JOYBUTTONDOWN
                self.buttons[int(ev.button)] = down
                name = self._button_events.get(int(ev.button))
                if down and name in SESSION_EVENTS:
                    cmd.triggered.add(name)
                grip = self.profile["gripper"]
                if down and grip.get("button") == ev.button and grip.get("mode") == "toggle":
                    self._gripper_toggle = not self._gripper_toggle

    def _command(self, cmd: Command) -> Command:
        """The command the current device state asks for."""
        axes = self.profile["axes"]
        cmd.motion = np.array(
            [self._axis(axes[k]) if k in axes else 0.0 for k in ("x", "y", "z")], np.float32
        )
        cmd.rotation = np.array([self._rotation(r) for r in ROTATIONS], np.float32)
        grip = self.profile["gripper"]
        if "axis" in grip:
            rest = float(grip.get("rest", -1.0))
            raw = self.axes.get(self._key(grip["axis"]), rest)
            # trigger travels from its rest value to +1: map to -1 (open) .. +1 (closed)
            cmd.gripper = (
                float(np.clip(2 * (raw - rest) / (1.0 - rest) - 1.0, -1, 1)) if rest < 1 else -1.0
            )
        elif grip.get("mode") == "toggle":
            cmd.gripper = 1.0 if self._gripper_toggle else -1.0
        else:
            cmd.gripper = 1.0 if self.buttons.get(self._key(grip["button"]), False) else -1.0
        takeover = self.profile["buttons"].get("takeover")
        cmd.takeover = takeover is not None and self.buttons.get(self._key(takeover), False)
        fine = self.profile["buttons"].get("fine")
        cmd.fine = fine is not None and self.buttons.get(self._key(fine), False)
        return cmd

    @staticmethod
    def _key(name):
        return int(name)  # raw joysticks number their axes and buttons


# SDL's standard controller: the names of its axes and buttons (SDL's mapping strings)
CONTROLLER_AXES = {
    "leftx": pygame.CONTROLLER_AXIS_LEFTX,
    "lefty": pygame.CONTROLLER_AXIS_LEFTY,
    "rightx": pygame.CONTROLLER_AXIS_RIGHTX,
    "righty": pygame.CONTROLLER_AXIS_RIGHTY,
    "lefttrigger": pygame.CONTROLLER_AXIS_TRIGGERLEFT,
    "righttrigger": pygame.CONTROLLER_AXIS_TRIGGERRIGHT,
}
CONTROLLER_BUTTONS = {
    name: getattr(pygame, f"CONTROLLER_BUTTON_{const}")
    for name, const in {
        "a": "A", "b": "B", "x": "X", "y": "Y", "back": "BACK", "guide": "GUIDE",
        "start": "START", "leftstick": "LEFTSTICK", "rightstick": "RIGHTSTICK",
        "leftshoulder": "LEFTSHOULDER", "rightshoulder": "RIGHTSHOULDER", "dpup": "DPAD_UP",
        "dpdown": "DPAD_DOWN", "dpleft": "DPAD_LEFT", "dpright": "DPAD_RIGHT",
    }.items()
}  # fmt: skip


class ControllerDevice(GamepadDevice):
    """A pad read through SDL's game-controller mapping (``pygame._sdl2.controller``): every
    pad in SDL's controller database has one standard layout (left stick, right stick,
    triggers 0..1, A/B/X/Y, shoulders, D-pad), whatever order its raw axes come in. The
    profile names SDL's axes and buttons (``teleop/profiles/controller.json``); the raw
    joystick profiles are the fallback for pads SDL does not know.
    """

    def __init__(self, profile: dict[str, Any], index: int = 0):
        super().__init__(profile, index)
        self.controller = None
        self._was: dict[str, bool] = {}

    @staticmethod
    def _key(name):
        return str(name)

    def connect(self) -> None:
        from pygame._sdl2 import controller

        pygame.joystick.init()
        controller.init()
        if pygame.joystick.get_count() <= self.index:
            raise DeviceNotFound(
                f"no gamepad at index {self.index} ({pygame.joystick.get_count()} found); "
                "plug one in or use --input keyboard"
            )
        if not controller.is_controller(self.index):
            raise DeviceNotFound(
                f"{pygame.joystick.Joystick(self.index).get_name()!r} is not in SDL's game-"
                "controller database; read it raw with --profile xbox, playstation, generic "
                "or your own JSON (iltk record --calibrate shows its axes)"
            )
        self.controller = controller.Controller(self.index)
        self.joystick = self.controller.as_joystick()
        self._instance = self.joystick.get_instance_id()
        self.name = self.controller.name
        self._was = {}
        self.connected = True

    def _consume(self, events: list, cmd: Command) -> None:
        plugging = (pygame.JOYDEVICEADDED, pygame.JOYDEVICEREMOVED)
        super()._consume([ev for ev in events if ev.type in plugging], cmd)
        if not self.connected or self.controller is None:
            return
        # the state SDL keeps, read through the mapping (triggers rest at 0)
        self.axes = {n: self.controller.get_axis(a) / 32767.0 for n, a in CONTROLLER_AXES.items()}
        now = {n: bool(self.controller.get_button(b)) for n, b in CONTROLLER_BUTTONS.items()}
        for name, down in now.items():
            if down and not self._was.get(name, False):
                event = self._button_events.get(name)
                if event in SESSION_EVENTS:
                    cmd.triggered.add(event)
                grip = self.profile["gripper"]
                if grip.get("button") == name and grip.get("mode") == "toggle":
                    self._gripper_toggle = not self._gripper_toggle
        self.buttons, self._was = now, now


KEY_BINDINGS = {
    "arrows": "move x / y",
    "W / S": "move z up / down",
    "J / L": "roll (the arm)",
    "I / K": "pitch (the arm)",
    "U / O": "yaw (the arm)",
    "Shift (held)": "fine control",
    "Space": "toggle the gripper",
    "T (held)": "take over from the policy",
    "Enter": "save the episode",
    "Backspace": "discard the episode",
    "R": "reset without saving",
    "V": "swap the camera views",
    "Esc": "quit",
}
PAD_BINDINGS = {
    "left stick": "move x / y",
    "right stick (vertical)": "move z",
    "D-pad left / right": "roll (the arm)",
    "D-pad up / down": "pitch (the arm)",
    "right stick (horizontal)": "yaw (the arm)",
    "LB (held)": "fine control",
    "RT": "close the gripper",
    "RB (held)": "take over from the policy",
    "A": "save the episode",
    "B": "discard the episode",
    "X": "reset without saving",
    "Y": "swap the camera views",
    "Start": "quit",
}


SPACEMOUSE_BINDINGS = {
    "push / pull the cap": "move x / y",
    "lift / press the cap": "move z",
    "tilt the cap sideways": "roll (the arm)",
    "tilt the cap forward / back": "pitch (the arm)",
    "twist the cap": "yaw (the arm)",
    "left button": "toggle the gripper",
    "right button": "save the episode",
    "Backspace (keyboard)": "discard the episode",
    "R (keyboard)": "reset without saving",
    "V (keyboard)": "swap the camera views",
    "Esc (keyboard)": "quit",
}


def bindings_for(device_kind: str, mode: str, action_dim: int, views: int = 2) -> list[str]:
    """The keys that do something in this session, one "key: what" line each: no
    takeover key while recording, no z or gripper keys on planar tasks, no view key with
    one camera. ``device_kind``: keyboard, gamepad or spacemouse."""
    if device_kind == "spacemouse":
        skip = {"tilt the cap sideways", "tilt the cap forward / back", "twist the cap"}
        if views < 2:
            skip.add("V (keyboard)")
        return [
            f"{k}: {v}"
            for k, v in SPACEMOUSE_BINDINGS.items()
            if k not in skip or (action_dim == 7 and "cap" in k)
        ]
    table = KEY_BINDINGS if device_kind == "keyboard" else PAD_BINDINGS
    skip = set()
    if mode == "record":
        skip |= {"T (held)", "RB (held)"}
    if action_dim < 3:
        skip |= {"W / S", "right stick (vertical)"}
    if action_dim < 4:
        skip |= {"Space", "RT"}
    if action_dim != 7:  # rotations: the arm only
        skip |= {"J / L", "I / K", "U / O", "D-pad left / right", "D-pad up / down"}
        skip |= {"right stick (horizontal)"}
    if views < 2:
        skip |= {"V", "Y"}
    return [f"{k}: {v}" for k, v in table.items() if k not in skip]


class KeyboardDevice:
    """Keyboard teleoperation with the default bindings in ``KEY_BINDINGS``."""

    kind = "keyboard"
    name = "keyboard"

    def __init__(self):
        self.held: set[int] = set()
        self.gripper_closed = False
        self.connected = True

    def connect(self) -> None:
        self.connected = True

    def close(self) -> None:
        self.held.clear()

    def new_episode(self) -> None:
        """A toggled gripper opens at every episode start (it never carries over)."""
        self.gripper_closed = False

    def read(self, events: list) -> Command:
        cmd = Command()
        for ev in events:
            if ev.type == pygame.KEYDOWN:
                self.held.add(ev.key)
                if ev.key == pygame.K_SPACE:
                    self.gripper_closed = not self.gripper_closed
            elif ev.type == pygame.KEYUP:
                self.held.discard(ev.key)
        h = self.held

        def axis(pos, neg):
            return float((pos in h) - (neg in h))

        cmd.motion = np.array(
            [
                axis(pygame.K_RIGHT, pygame.K_LEFT),
                axis(pygame.K_UP, pygame.K_DOWN),
                axis(pygame.K_w, pygame.K_s),
            ],
            np.float32,
        )
        cmd.rotation = np.array(
            [
                axis(pygame.K_l, pygame.K_j),
                axis(pygame.K_i, pygame.K_k),
                axis(pygame.K_u, pygame.K_o),
            ],
            np.float32,
        )
        cmd.gripper = 1.0 if self.gripper_closed else -1.0
        cmd.takeover = pygame.K_t in h
        cmd.fine = pygame.K_LSHIFT in h or pygame.K_RSHIFT in h
        return cmd


def session_keys(events: list) -> set[str]:
    """Session events from the keyboard, whatever the device (Enter, Backspace, R, Esc, V)."""
    out = set()
    for ev in events:
        if ev.type == pygame.QUIT:
            out.add("quit")
        elif ev.type == pygame.KEYDOWN:
            if ev.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
                out.add("save")
            elif ev.key == pygame.K_BACKSPACE:
                out.add("discard")
            elif ev.key == pygame.K_r:
                out.add("reset")
            elif ev.key == pygame.K_ESCAPE:
                out.add("quit")
            elif ev.key == pygame.K_v:
                out.add("view")
    return out


FINE_SCALE = 0.2  # motion while the fine-control modifier is held


def command_to_action(cmd: Command, action_dim: int) -> np.ndarray:
    """Map a command to a task action: xy (2), xyz (3), xyz + gripper (4), and the arm's
    6-DoF xyz + roll, pitch, yaw + gripper (7); other sizes get the motion axes first and
    zeros after. Fine control scales motion and rotation by FINE_SCALE (at Reach's 0.5 m/s
    and 20 Hz: 5 mm a step instead of 25 mm, against a 30 mm radius)."""
    scale = FINE_SCALE if cmd.fine else 1.0
    motion = cmd.motion * scale
    if action_dim == 4:
        return np.concatenate([motion, [cmd.gripper]]).astype(np.float32)
    if action_dim == 7:
        return np.concatenate([motion, cmd.rotation * scale, [cmd.gripper]]).astype(np.float32)
    out = np.zeros(action_dim, np.float32)
    n = min(action_dim, 3)
    out[:n] = motion[:n]
    return out


def make_device(kind: str, profile: str | None = None, index: int = 0):
    """``kind``: auto (a pad if one is plugged in, else the keyboard), gamepad or keyboard."""
    if kind not in ("auto", "gamepad", "keyboard"):
        raise ValueError(f"device must be auto, gamepad or keyboard, got {kind!r}")
    if kind == "keyboard":
        dev = KeyboardDevice()
        dev.connect()
        return dev
    pads = describe_joysticks()
    if not pads:
        if kind == "gamepad":
            raise DeviceNotFound("no gamepad found; plug one in or use --input keyboard")
        print("teleop: no gamepad found, using the keyboard")
        dev = KeyboardDevice()
        dev.connect()
        return dev
    name = profile or pads[min(index, len(pads) - 1)]["profile"]
    loaded = load_profile(name)
    dev = (ControllerDevice if loaded.get("kind") == "controller" else GamepadDevice)(loaded, index)
    dev.connect()
    return dev
