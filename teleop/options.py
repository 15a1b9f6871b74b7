"""What a person's session at an input device takes: the one declaration of the options
`iltk record` and `iltk correct` share, read by :class:`teleop.session.TeleopSession`.

Light on purpose (no pygame, no MuJoCo): the command line builds its ``--help`` from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


def check_render_size(size: tuple[int, int]) -> None:
    """A rendered image's size: 16 to 4096 pixels each way."""
    w, h = size
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise ValueError(f"--render-size must be between 16 and 4096 pixels each, got {w} {h}")


@dataclass
class SessionOptions:
    """What every windowed session at a device takes (`iltk record`, `iltk correct`)."""

    input: Literal["auto", "gamepad", "keyboard"] = "auto"
    """Input device: auto uses a pad when one is plugged in, else the keyboard."""
    profile: str | None = None
    """Pad mapping: xbox, playstation, generic, controller, spacemouse or a JSON file
    (default: by the pad's name)."""
    pad_index: int = 0
    """Which joystick to use when several are plugged in (`iltk record --list-devices`)."""
    episodes: int = 0
    """Stop after this many saved episodes (0: until you quit)."""
    control_freq: float = 20.0
    """Control rate in Hz."""
    operator: str = ""
    """Your name, stored with every episode."""
    seed: int = 0
    """Episode k is reset with seed SEED + k (continue after earlier sessions with a new seed)."""
    window: tuple[int, int] = (640, 640)
    """Initial window size (at least 480x480)."""
    render_size: tuple[int, int] | None = None
    """Camera image rendered each step (default: the size the window shows it at)."""
    keep_timeouts: bool = False
    """Save episodes that reach the time limit (default: discard them)."""
    max_steps: int | None = None
    """Episode limit in control steps (default: the task's; the HUD shows the time left)."""

    def __post_init__(self):
        if not (math.isfinite(self.control_freq) and 1.0 <= self.control_freq <= 500.0):
            raise ValueError(f"--control-freq must be in [1, 500] Hz, got {self.control_freq}")
        if self.episodes < 0:
            raise ValueError(f"--episodes must be >= 0 (0: until you quit), got {self.episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.render_size is not None:
            check_render_size(self.render_size)

    def make_device(self):
        """The input device these options name (``DeviceNotFound`` when it is absent)."""
        from teleop.devices import make_device

        return make_device(self.input, self.profile, self.pad_index)
