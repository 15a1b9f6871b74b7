"""A real X display for window tests: Xvfb, real key events (xdotool, through XTEST, as
a keyboard makes them) and screenshots (python-xlib). `.ci/run` installs xvfb and xdotool."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np


class XvfbDisplay:
    """An Xvfb server on a free display number (``-displayfd``), stopped on exit."""

    def __init__(self, size=(1024, 768)):
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(w),
                "-screen",
                "0",
                f"{size[0]}x{size[1]}x24",
                "-nolisten",
                "tcp",
            ],
            pass_fds=(w,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(w)
        with os.fdopen(r) as f:
            number = f.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        self.name = f":{number}"

    def env(self, mujoco_gl: str | None = "egl", **extra) -> dict:
        """The environment of a windowed command on this display (no dummy SDL driver;
        ``mujoco_gl=None`` leaves MUJOCO_GL unset)."""
        drop = {"SDL_VIDEODRIVER", "MUJOCO_GL", "PYOPENGL_PLATFORM"}
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(DISPLAY=self.name, **extra)
        if mujoco_gl is not None:
            env["MUJOCO_GL"] = mujoco_gl
            if mujoco_gl == "egl":
                env["PYOPENGL_PLATFORM"] = "egl"
        return env

    def xdotool(self, *args: str, timeout: float = 30) -> str:
        res = subprocess.run(
            ["xdotool", *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        return res.stdout.strip()

    def window_of(self, proc, timeout: float = 60, log=None) -> str:
        """The id of the first window the process ``proc`` (a Popen) shows, waiting for it;
        when it exits first or shows none in ``timeout`` s the error carries its output
        (``log``: the file its output goes to)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdotool("search", "--onlyvisible", "--pid", str(proc.pid))
            if found:
                wid = found.splitlines()[0]
                self.xdotool("windowfocus", "--sync", wid)
                return wid
            if proc.poll() is not None:
                raise RuntimeError(
                    f"process {proc.pid} exited ({proc.returncode}) before it showed a "
                    f"window:\n{_output(log)}"
                )
            time.sleep(0.1)
        raise TimeoutError(f"process {proc.pid} showed no window in {timeout} s:\n{_output(log)}")

    def key(self, *keys: str) -> None:
        self.xdotool("key", "--delay", "60", *keys)

    def hold(self, key: str, seconds: float) -> None:
        self.xdotool("keydown", key)
        time.sleep(seconds)
        self.xdotool("keyup", key)

    def screenshot(self, path=None) -> np.ndarray:
        """The whole screen as (H, W, 3) uint8 (saved as PNG to ``path`` when given)."""
        from Xlib import X, display

        d = display.Display(self.name)
        try:
            root = d.screen().root
            g = root.get_geometry()
            raw = root.get_image(0, 0, g.width, g.height, X.ZPixmap, 0xFFFFFFFF)
            img = np.frombuffer(raw.data, np.uint8).reshape(g.height, g.width, 4)[:, :, 2::-1]
        finally:
            d.close()
        if path is not None:
            import imageio.v2 as imageio

            imageio.imwrite(path, img)
        return np.ascontiguousarray(img)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _output(log) -> str:
    if log is None:
        return "(no log)"
    log.flush()
    with open(log.name) as f:
        return f.read()[-4000:]
