"""Child process for the SIGINT test: a keyboard session that saves an episode every
8 polls and prints SAVED <demo> after each save, until interrupted."""

import signal
import sys

import pygame

from teleop.devices import KeyboardDevice
from teleop.options import SessionOptions
from teleop.session import TeleopSession


def main():
    # A child started from a background job inherits SIGINT ignored (POSIX shells do that
    # without job control), and Python then installs no KeyboardInterrupt handler: restore
    # it, so the test's SIGINT is the Ctrl-C of a person at a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out = sys.argv[1]

    def hook(tick):
        if tick == 0:
            print("READY", flush=True)
        pygame.event.post(
            pygame.event.Event(
                pygame.KEYDOWN,
                key=pygame.K_RIGHT if tick % 2 else pygame.K_UP,
                mod=0,
                unicode="",
                scancode=0,
            )
        )
        if tick % 8 == 7:
            pygame.event.post(
                pygame.event.Event(
                    pygame.KEYDOWN, key=pygame.K_RETURN, mod=0, unicode="", scancode=0
                )
            )

    session = TeleopSession(
        "iltk/Reach-v0",
        out,
        KeyboardDevice(),
        auto_save_after=0,
        event_hook=hook,
        on_saved=lambda name, ep: print(f"SAVED {name}", flush=True),
        options=SessionOptions(control_freq=50),
    )
    session.run()
    print("EXITED", flush=True)


if __name__ == "__main__":
    main()
