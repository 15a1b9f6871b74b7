"""Child of the real-window pad test: a virtual SDL pad (plugged into this process's SDL)
steers the arm in a real X window through SDL's controller mapping. argv: out.hdf5 shot.png"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import imageio.v2 as imageio  # noqa: E402
import pygame  # noqa: E402
from virtual_pad import VirtualPad  # noqa: E402

from teleop.devices import ControllerDevice, make_device  # noqa: E402
from teleop.session import TeleopSession  # noqa: E402

out, shot = sys.argv[1], sys.argv[2]
pygame.init()
pad = VirtualPad()
device = make_device("auto")
assert isinstance(device, ControllerDevice), device
session = None


def hook(tick):
    if tick == 5:
        pad.axis(0, 1.0)  # left stick right: +x
        pad.axis(2, -1.0)  # right stick left: yaw + (the profile inverts it)
    elif tick == 30:
        pad.axis(0, 0.0)
        pad.axis(2, 0.0)
        imageio.imwrite(shot, session.window.snapshot())
        pad.button(0)  # A: save
    elif tick == 31:
        pad.button(0, False)
    elif tick == 34:
        pad.button(6)  # Start: quit


session = TeleopSession("iltk/PandaLift-v0", out, device, auto_save_after=0, event_hook=hook)
result = session.run()
pad.close()
print(f"saved {len(result.saved)}")
