"""The pygame window: the live camera image scaled to the window, with a HUD."""

from __future__ import annotations

import os
import sys

import numpy as np
import pygame

MIN_SIZE = 480
HEADLESS_DRIVERS = ("dummy", "offscreen")


def require_display() -> None:
    """Raise at once, before any work, when no window can be shown on this machine."""
    if os.environ.get("SDL_VIDEODRIVER", "") in HEADLESS_DRIVERS:
        return  # an offscreen window (tests, benchmarks)
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise RuntimeError(
            "no display to open a window on (DISPLAY is not set): run it on a desktop, "
            "over ssh -X, or under a virtual display (xvfb-run iltk ...); to watch episodes "
            "without a screen use 'iltk replay FILE --video out.mp4'"
        )


class TeleopWindow:
    """A resizable window (at least 480x480) that shows frames and HUD text.

    Under ``SDL_VIDEODRIVER=dummy`` it works headless (tests, benchmarks).
    """

    def __init__(self, size: tuple[int, int] = (640, 640), title: str = "iltk"):
        require_display()
        # only what a window needs: no audio (it would probe the sound system for nothing)
        pygame.display.init()
        pygame.font.init()
        pygame.joystick.init()
        self.size = (max(size[0], MIN_SIZE), max(size[1], MIN_SIZE))
        try:
            self.screen = pygame.display.set_mode(self.size, pygame.RESIZABLE)
        except pygame.error as err:
            raise RuntimeError(
                f"cannot open a window ({err}). On a machine without a display use --video where "
                "offered, or set SDL_VIDEODRIVER=dummy to run the window offscreen"
            ) from None
        pygame.display.set_caption(title)
        self.font = pygame.font.Font(None, 22)
        self.big = pygame.font.Font(None, 34)
        self.last_frame: np.ndarray | None = None

    def events(self) -> list:
        """Poll the event queue once; handles resizing (never below 480x480)."""
        events = pygame.event.get()
        for ev in events:
            if ev.type == pygame.VIDEORESIZE:
                self.size = (max(ev.w, MIN_SIZE), max(ev.h, MIN_SIZE))
                self.screen = pygame.display.set_mode(self.size, pygame.RESIZABLE)
        return events

    def show(
        self,
        frame: np.ndarray | None,
        hud: list[str],
        banner: str | None = None,
        banner_color=(255, 210, 60),
        footer: str | None = None,
    ) -> None:
        if frame is not None:
            self.last_frame = frame
        self.screen.fill((20, 22, 26))
        if self.last_frame is not None:
            surf = pygame.surfarray.make_surface(
                np.ascontiguousarray(self.last_frame.swapaxes(0, 1))
            )
            w, h = self.size
            fh, fw = self.last_frame.shape[:2]
            scale = min(w / fw, h / fh)
            dst = (int(fw * scale), int(fh * scale))
            surf = pygame.transform.scale(surf, dst)
            self.screen.blit(surf, ((w - dst[0]) // 2, (h - dst[1]) // 2))
        if hud:
            pad = 6
            texts = [self.font.render(line, True, (235, 235, 235)) for line in hud]
            box = pygame.Surface(
                (
                    max(t.get_width() for t in texts) + 2 * pad,
                    sum(t.get_height() for t in texts) + 2 * pad,
                ),
                pygame.SRCALPHA,
            )
            box.fill((0, 0, 0, 150))
            self.screen.blit(box, (8, 8))
            y = 8 + pad
            for t in texts:
                self.screen.blit(t, (8 + pad, y))
                y += t.get_height()
        if footer:  # wrapped to the window's width, bottom-aligned
            lines, line = [], ""
            for word in footer.split("   "):
                trial = f"{line}   {word}" if line else word
                if line and self.font.size(trial)[0] > self.size[0] - 16:
                    lines.append(line)
                    line = word
                else:
                    line = trial
            lines.append(line)
            y = self.size[1] - 8
            for text in reversed(lines):
                t = self.font.render(text, True, (200, 200, 200))
                y -= t.get_height()
                self.screen.blit(t, (8, y))
        if banner:
            t = self.big.render(banner, True, banner_color)
            bg = pygame.Surface((t.get_width() + 24, t.get_height() + 16), pygame.SRCALPHA)
            bg.fill((0, 0, 0, 190))
            x, y = (self.size[0] - bg.get_width()) // 2, (self.size[1] - bg.get_height()) // 2
            self.screen.blit(bg, (x, y))
            self.screen.blit(t, (x + 12, y + 8))
        pygame.display.flip()

    def snapshot(self) -> np.ndarray:
        """The window's pixels (H, W, 3) as shown (for tests and screenshots)."""
        return pygame.surfarray.array3d(self.screen).swapaxes(0, 1).copy()

    def close(self) -> None:
        pygame.display.quit()
