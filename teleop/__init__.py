"""The human interface: input devices, the window and HUD, record / correct sessions, the
viewer. Imported only by the ``iltk`` commands that open a window.

pygame's accelerated framebuffer makes an OpenGL context of its own, which fights the one
MuJoCo renders offscreen with (``EGL_BAD_ACCESS`` from ``eglMakeCurrent`` with
``MUJOCO_GL=egl``, an all-black window with glfw). The window only blits images, so a plain
software surface is all it needs: set before pygame is first imported, whatever the
user's environment says (checked under Xvfb with MUJOCO_GL egl, osmesa, glfw and unset).
"""

import os

os.environ["SDL_FRAMEBUFFER_ACCELERATION"] = "0"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
