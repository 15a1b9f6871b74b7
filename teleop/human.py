"""The person at the device, as a controller of the one control loop.

:class:`HumanController` turns the person's command into the action (executed and label).
It is the supervisor that ``iltk.controllers`` combinators wrap in the correction modes:
``TakeoverGate(human, policy, ButtonTrigger())`` for HG-DAgger (it reports the takeover
button as the ``takeover`` field the trigger reads) and ``BetaMixture(human, policy,
beta)`` for DAgger (it reports ``has_label``: an idle device labels nothing). It reads the
person through :class:`PersonInput` (a session implements it: polling, the wait for the
first input, the pause while a pad is unplugged), and knows nothing else of the session.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from iltk.rollout import ControlOutput
from teleop.devices import Command, command_to_action


class PersonInput(Protocol):
    """Where the person's commands come from."""

    action_dim: int
    """The task's action size (the command is mapped onto it)."""
    last_late: bool
    """Whether the last control deadline was missed (recorded per step)."""

    def start_episode(self) -> None:
        """An episode starts (the next command may wait for the person's first input)."""

    def next_command(self) -> Command:
        """The person's command for this step."""


class HumanController:
    """The person's command, one env.

    Args:
        person: a :class:`PersonInput` (a ``TeleopSession``).
        report_takeover: add the takeover button's state as the ``takeover`` field.
        report_label: add ``has_label`` (True where the person gave input).
    """

    def __init__(self, person: PersonInput, *, report_takeover=False, report_label=False):
        self.person = person
        self.report_takeover, self.report_label = report_takeover, report_label

    def reset(self, env_ids):
        self.person.start_episode()

    def act(self, obs, info, envs) -> ControlOutput:
        cmd = self.person.next_command()
        human = command_to_action(cmd, self.person.action_dim)[None]
        fields = {
            "timestamps": np.array([time.perf_counter()]),
            "late": np.array([self.person.last_late]),
        }
        if self.report_takeover:
            fields["takeover"] = np.array([bool(cmd.takeover)])
        if self.report_label:
            fields["has_label"] = np.array([bool(cmd.active)])
        return ControlOutput(executed=human, label=human, fields=fields)
