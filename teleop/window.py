"""The pygame window: the live camera image scaled to the window, and a panel beside it
(or below, whichever leaves the scene larger) with who is in control, the status, a second
camera view and the keys of the current mode. No text is drawn over the workspace except
a brief banner low in the picture."""

from __future__ import annotations

import os
import sys

import numpy as np
import pygame

MIN_SIZE = 480
PANEL_W = 250  # the side panel (status, second view, keys) beside the scene
PANEL_H = 180  # ... or below it, whichever leaves the scene larger
BORDER = 4  # the frame around the scene, in the colour of who is in control
HUMAN_COLOR = (90, 210, 120)
POLICY_COLOR = (90, 160, 255)
RECORD_COLOR = (235, 80, 70)
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
        self.small = pygame.font.Font(None, 19)
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

    # ------------------------------------------------------------------ layout
    def layout(self, frame_shape: tuple[int, int]) -> tuple[pygame.Rect, pygame.Rect]:
        """(scene rect, panel rect): the panel beside the scene or below it, whichever
        leaves the scene larger. Text never lies over the scene."""
        w, h = self.size
        fh, fw = frame_shape
        side = pygame.Rect(0, 0, max(w - PANEL_W, 1), h)
        below = pygame.Rect(0, 0, w, max(h - PANEL_H, 1))
        scale_side = min(side.w / fw, side.h / fh)
        scale_below = min(below.w / fw, below.h / fh)
        if scale_side >= scale_below:
            return side, pygame.Rect(side.w, 0, w - side.w, h)
        return below, pygame.Rect(0, below.h, w, h - below.h)

    def show(
        self,
        frame: np.ndarray | None,
        hud: list[str],
        banner: str | None = None,
        banner_color=(255, 210, 60),
        footer: str | list[str] | None = None,
        *,
        badge: tuple[str, tuple[int, int, int]] | None = None,
        inset: np.ndarray | None = None,
        inset_label: str = "",
    ) -> None:
        """Draw the scene and, beside or below it, the panel: a coloured badge (who is in
        control), the status lines (``hud``), a second camera view (``inset``) and the keys
        (``footer``: one binding per entry, or a string split at triple spaces). The scene
        gets a frame in the badge's colour; ``banner`` is the one text drawn over it
        (saves, discards, waiting for input), centred and brief."""
        if frame is not None:
            self.last_frame = frame
        self.last_banner = banner
        self.screen.fill((20, 22, 26))
        frame_shape = self.last_frame.shape[:2] if self.last_frame is not None else (240, 320)
        scene, panel = self.layout(frame_shape)
        color = badge[1] if badge else (70, 74, 82)
        if self.last_frame is not None:
            fh, fw = frame_shape
            scale = min((scene.w - 2 * BORDER) / fw, (scene.h - 2 * BORDER) / fh)
            dst = (max(int(fw * scale), 1), max(int(fh * scale), 1))
            surf = pygame.surfarray.make_surface(
                np.ascontiguousarray(self.last_frame.swapaxes(0, 1))
            )
            surf = pygame.transform.scale(surf, dst)
            pos = (scene.x + (scene.w - dst[0]) // 2, scene.y + (scene.h - dst[1]) // 2)
            pygame.draw.rect(
                self.screen,
                color,
                pygame.Rect(
                    pos[0] - BORDER, pos[1] - BORDER, dst[0] + 2 * BORDER, dst[1] + 2 * BORDER
                ),
            )
            self.screen.blit(surf, pos)
        self._panel(panel, hud, footer, badge, inset, inset_label)
        if banner:
            t = self.big.render(banner, True, banner_color)
            if t.get_width() > scene.w - 24:
                t = self.font.render(banner, True, banner_color)
            bg = pygame.Surface((t.get_width() + 24, t.get_height() + 16), pygame.SRCALPHA)
            bg.fill((0, 0, 0, 190))
            x = scene.x + (scene.w - bg.get_width()) // 2
            y = scene.y + scene.h - bg.get_height() - 3 * BORDER  # low, off the workspace centre
            self.screen.blit(bg, (x, y))
            self.screen.blit(t, (x + 12, y + 8))
        pygame.display.flip()

    def _panel(self, rect, hud, footer, badge, inset, inset_label) -> None:
        pad = 10
        pygame.draw.rect(self.screen, (30, 33, 38), rect)
        keys = footer.split("   ") if isinstance(footer, str) else list(footer or [])
        side = rect.h > rect.w  # a side panel: one column; below the scene: columns
        if not side and rect.w < 600:
            inset = None  # a narrow window: status and keys only (V still swaps the views)
        columns = 1 if side else (3 if inset is not None else 2)
        col_w = (rect.w - (columns + 1) * pad) // columns
        x, y = rect.x + pad, rect.y + pad
        key_cols = [columns - 1]  # below the scene: the keys' column(s)
        if not side:
            lines = [p for k in keys for p in self._wrap(k, col_w, self.small)]
            if inset is not None and len(lines) * self.small.get_linesize() > rect.h - 2 * pad:
                inset, key_cols = None, [1, 2]  # the keys need the inset's column too
        self.text_rects: list[pygame.Rect] = []  # where text was drawn (tests read it)
        if badge:
            text = self.big.render(badge[0], True, (15, 15, 15))
            box = pygame.Rect(x, y, col_w, text.get_height() + 10)
            pygame.draw.rect(self.screen, badge[1], box, border_radius=6)
            self.screen.blit(text, (box.x + (box.w - text.get_width()) // 2, box.y + 5))
            y = box.bottom + 8
        font = self.font  # the status; in the small font where it would not fit otherwise
        if (
            y + sum(len(self._wrap(t, col_w)) for t in hud) * font.get_linesize()
            > rect.bottom - pad
        ):
            font = self.small
        for line in hud:
            for part in self._wrap(line, col_w, font):
                self._text(font, part, (235, 235, 235), (x, y))
                y += font.get_linesize()
        if inset is not None:
            # side: under the status, if it fits above the keys; below: the middle column
            iw = (
                col_w
                if side
                else min(col_w, int((rect.h - 2 * pad) * inset.shape[1] / inset.shape[0]))
            )
            ih = int(iw * inset.shape[0] / inset.shape[1])
            ix, iy = (x, y + 6) if side else (rect.x + 2 * pad + col_w, rect.y + pad)
            keys_h = len(keys) * self.small.get_linesize() if side else 0
            if iy + ih + pad < rect.bottom - keys_h:
                surf = pygame.surfarray.make_surface(np.ascontiguousarray(inset.swapaxes(0, 1)))
                self.screen.blit(pygame.transform.scale(surf, (iw, ih)), (ix, iy))
                if inset_label:
                    label = self.small.render(inset_label, True, (230, 230, 230))
                    self.screen.blit(label, (ix + 4, iy + 2))
        if keys:  # the keys of the current mode, at the bottom (or the right column[s])
            lines = [p for k in keys for p in self._wrap(k, col_w, self.small)]
            step = self.small.get_linesize()
            if side:
                ky = rect.bottom - pad - len(lines) * step
                for line in lines:
                    self._text(self.small, line, (190, 190, 190), (x, ky))
                    ky += step
                return
            per_col = max((rect.h - 2 * pad) // step, 1)
            room = per_col * len(key_cols)
            if len(lines) > room:  # never cut a line off at the panel's edge
                lines = lines[: room - 1] + ["... (all keys: README)"]
            for i, line in enumerate(lines):
                col = key_cols[i // per_col]
                kx = rect.x + (col + 1) * pad + col * col_w
                self._text(
                    self.small, line, (190, 190, 190), (kx, rect.y + pad + (i % per_col) * step)
                )

    def _text(self, font, text: str, color, pos) -> None:
        surf = font.render(text, True, color)
        self.screen.blit(surf, pos)
        self.text_rects.append(pygame.Rect(pos, surf.get_size()))

    def _wrap(self, text: str, width: int, font=None) -> list[str]:
        font = font or self.font
        words, lines, line = text.split(" "), [], ""
        for word in words:
            trial = f"{line} {word}" if line else word
            if line and font.size(trial)[0] > width:
                lines.append(line)
                line = word
            else:
                line = trial
        return lines + [line]

    def snapshot(self) -> np.ndarray:
        """The window's pixels (H, W, 3) as shown (for tests and screenshots)."""
        return pygame.surfarray.array3d(self.screen).swapaxes(0, 1).copy()

    def close(self) -> None:
        pygame.display.quit()
