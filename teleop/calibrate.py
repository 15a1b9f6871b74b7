"""``iltk record --calibrate``: live axis, button and hat values of a pad, in a window."""

from __future__ import annotations

import time

import numpy as np
import pygame

from teleop.devices import describe_joysticks, load_profile, profile_for
from teleop.window import TeleopWindow


def values_image(
    axes: dict[int, float],
    buttons: dict[int, bool],
    hats: dict[int, tuple],
    n_axes: int,
    n_buttons: int,
    size: tuple[int, int] = (320, 240),
) -> np.ndarray:
    """The pad's live state as a picture (the window's scene): a bar per axis filled from
    its centre to its value, a square per button (lit while held), a cross per hat."""
    w, h = size
    img = np.full((h, w, 3), 28, np.uint8)
    rows = max(n_axes, 1)
    bar_h = max(min((h // 2) // rows - 4, 18), 4)
    for a in range(n_axes):
        y0 = 8 + a * (bar_h + 4)
        img[y0 : y0 + bar_h, 20 : w - 20] = 70  # the track
        mid = w // 2
        end = int(mid + axes.get(a, 0.0) * (w // 2 - 20))
        lo, hi = sorted((mid, end))
        if hi > lo:
            img[y0 : y0 + bar_h, lo:hi] = (90, 210, 120)
        img[y0 : y0 + bar_h, mid - 1 : mid + 1] = 200  # the centre
    top = h // 2 + 10
    side = 18
    for b in range(n_buttons):
        x0, y0 = 20 + (b % 12) * (side + 6), top + (b // 12) * (side + 6)
        if y0 + side > h - 4:
            break
        img[y0 : y0 + side, x0 : x0 + side] = (240, 200, 60) if buttons.get(b) else 80
    for i, (hx, hy) in enumerate(hats.get(k, (0, 0)) for k in sorted(hats) or [0]):
        cx, cy = w - 40 - i * 50, h - 30
        img[cy - 2 : cy + 2, cx - 15 : cx + 15] = 80
        img[cy - 15 : cy + 15, cx - 2 : cx + 2] = 80
        if hx or hy:
            px, py = cx + 12 * hx, cy - 12 * hy
            img[py - 4 : py + 4, px - 4 : px + 4] = (240, 200, 60)
    return img


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
            n_axes = pads[index]["axes"] if pads else max(axes, default=-1) + 1
            n_buttons = pads[index]["buttons"] if pads else max(buttons, default=-1) + 1
            window.show(values_image(axes, buttons, hats, n_axes, n_buttons), lines)
            ticks += 1
            if max_ticks and ticks >= max_ticks:
                return {"axes": axes, "buttons": buttons, "hats": hats}
            time.sleep(1 / 30)
    finally:
        window.close()
