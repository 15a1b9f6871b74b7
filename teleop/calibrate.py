"""``iltk record --calibrate``: live axis, button and hat values of a pad, in a window."""

from __future__ import annotations

import time

import numpy as np
import pygame

from teleop.devices import describe_joysticks, load_profile, profile_for
from teleop.window import TeleopWindow


def calibrate(index: int = 0, max_ticks: int = 0, event_hook=None, virtual: bool = False) -> dict:
    """Show the raw values (Esc quits). Returns the last axis and button values seen."""
    pads = describe_joysticks()
    if not pads and not virtual:
        raise RuntimeError(
            "no gamepad found to calibrate; plug one in (iltk record --list-devices)"
        )
    name = pads[index]["name"] if pads else "virtual pad"
    profile = profile_for(name) if pads else "generic"
    mapping = load_profile(profile)
    window = TeleopWindow((640, 480), title=f"iltk calibrate: {name}")
    axes: dict[int, float] = {}
    buttons: dict[int, bool] = {}
    hats: dict[int, tuple] = {}
    ticks = 0
    roles = {v["axis"]: k for k, v in mapping["axes"].items()}
    broles = {v: k for k, v in mapping["buttons"].items()}
    try:
        while True:
            if event_hook is not None:
                event_hook(ticks)
            for ev in window.events():
                if ev.type == pygame.QUIT or (
                    ev.type == pygame.KEYDOWN and ev.key == pygame.K_ESCAPE
                ):
                    return {"axes": axes, "buttons": buttons, "hats": hats}
                if ev.type == pygame.JOYAXISMOTION:
                    axes[ev.axis] = float(ev.value)
                elif ev.type in (pygame.JOYBUTTONDOWN, pygame.JOYBUTTONUP):
                    buttons[ev.button] = ev.type == pygame.JOYBUTTONDOWN
                elif ev.type == pygame.JOYHATMOTION:
                    hats[ev.hat] = tuple(ev.value)
            lines = [f"{name}   (profile: {profile}; move sticks, press buttons; Esc quits)"]
            for a in sorted(axes):
                bar = "#" * int(round((axes[a] + 1) * 10))
                lines.append(f"axis {a:>2} {axes[a]:+.3f} {bar:<20} {roles.get(a, '')}")
            pressed = [
                f"{b}{'(' + broles[b] + ')' if b in broles else ''}"
                for b, d in sorted(buttons.items())
                if d
            ]
            lines.append(f"buttons down: {' '.join(pressed) or '-'}")
            for h, v in sorted(hats.items()):
                lines.append(f"hat {h}: {v}")
            window.show(np.zeros((240, 320, 3), np.uint8), lines)
            ticks += 1
            if max_ticks and ticks >= max_ticks:
                return {"axes": axes, "buttons": buttons, "hats": hats}
            time.sleep(1 / 30)
    finally:
        window.close()
