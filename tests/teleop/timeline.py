"""Scripted pygame event timelines for headless teleop tests."""

import pygame


def joy_axis(axis, value):
    return pygame.event.Event(pygame.JOYAXISMOTION, axis=axis, value=value, instance_id=0, joy=0)


def joy_button(button, down=True):
    kind = pygame.JOYBUTTONDOWN if down else pygame.JOYBUTTONUP
    return pygame.event.Event(kind, button=button, instance_id=0, joy=0)


def key(k, down=True):
    return pygame.event.Event(
        pygame.KEYDOWN if down else pygame.KEYUP, key=k, mod=0, unicode="", scancode=0
    )


def tap(k):
    return [key(k, True), key(k, False)]


class Timeline:
    """Posts the events scheduled for each poll tick (``session.event_hook``)."""

    def __init__(self, schedule: dict[int, list]):
        self.schedule = schedule
        self.ticks_seen = []

    def __call__(self, tick: int) -> None:
        self.ticks_seen.append(tick)
        for ev in self.schedule.get(tick, []):
            pygame.event.post(ev)
