"""A virtual joystick in the SDL that pygame loaded: pygame sees it as a plugged-in device
and gets real device-added, axis, hat, button and device-removed events from SDL's own
joystick code (``SDL_JoystickAttachVirtual``, SDL >= 2.0.14; pygame 2.6 bundles 2.28)."""

from __future__ import annotations

import ctypes
import glob
import os

import pygame


def _sdl() -> ctypes.CDLL:
    here = os.path.dirname(pygame.__file__)
    found = glob.glob(os.path.join(here, "..", "pygame.libs", "libSDL2-2*"))
    lib = ctypes.CDLL(found[0] if found else "libSDL2-2.0.so.0")  # the one already loaded
    lib.SDL_JoystickAttachVirtual.argtypes = [ctypes.c_int] * 4
    lib.SDL_JoystickAttachVirtual.restype = ctypes.c_int
    lib.SDL_JoystickDetachVirtual.argtypes = [ctypes.c_int]
    lib.SDL_JoystickOpen.argtypes = [ctypes.c_int]
    lib.SDL_JoystickOpen.restype = ctypes.c_void_p
    lib.SDL_JoystickSetVirtualAxis.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int16]
    lib.SDL_JoystickSetVirtualButton.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint8]
    lib.SDL_JoystickSetVirtualHat.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint8]
    lib.SDL_GetError.restype = ctypes.c_char_p
    return lib


class VirtualPad:
    """``with VirtualPad() as pad: pad.axis(0, 1.0)``: 6 axes, 15 buttons and a hat in SDL's
    controller order (SDL caches a controller mapping per GUID, and the GUID of a virtual
    pad does not change with its counts: keep them the same across tests)."""

    GAMECONTROLLER = 1  # SDL_JOYSTICK_TYPE_GAMECONTROLLER

    def __init__(self, axes: int = 6, buttons: int = 15, hats: int = 1, controller: bool = True):
        self.lib = _sdl()
        pygame.joystick.init()
        kind = self.GAMECONTROLLER if controller else 0  # 0: a plain joystick (a SpaceMouse)
        self.index = self.lib.SDL_JoystickAttachVirtual(kind, axes, buttons, hats)
        if self.index < 0:
            raise RuntimeError(f"SDL_JoystickAttachVirtual: {self.lib.SDL_GetError().decode()}")
        self.handle = self.lib.SDL_JoystickOpen(self.index)

    def axis(self, axis: int, value: float) -> None:
        self.lib.SDL_JoystickSetVirtualAxis(self.handle, axis, int(max(-1, min(1, value)) * 32767))

    def button(self, button: int, down: bool = True) -> None:
        self.lib.SDL_JoystickSetVirtualButton(self.handle, button, int(down))

    def hat(self, x: int, y: int) -> None:
        # SDL_HAT_UP 1, RIGHT 2, DOWN 4, LEFT 8
        self.lib.SDL_JoystickSetVirtualHat(
            self.handle,
            0,
            (1 if y > 0 else 4 if y < 0 else 0) | (2 if x > 0 else 8 if x < 0 else 0),
        )

    def close(self) -> None:
        if self.index >= 0:
            self.lib.SDL_JoystickDetachVirtual(self.index)
            self.index = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
