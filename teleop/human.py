"""The person at the device, as a controller of the one control loop.

:class:`HumanController` turns the device's command into the person's action (executed
and label). It is the supervisor that ``iltk.controllers`` combinators wrap in the
correction modes: ``TakeoverGate(human, policy, ButtonTrigger())`` for HG-DAgger (it
reports the takeover button as the ``takeover`` field the trigger reads) and
``BetaMixture(human, policy, beta)`` for DAgger (it reports ``has_label``: an idle device
labels nothing). A session supplies polling, the wait for the first input and the
pause while a pad is unplugged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from iltk.rollout import ControlOutput
from teleop.devices import command_to_action

if TYPE_CHECKING:
    from teleop.session import TeleopSession


class HumanController:
    """The person's command, one env.

    Args:
        session: polls the device (``poll``), waits for the first input of an episode
            (``wait_for_start``) and pauses while the device is disconnected.
        report_takeover: add the takeover button's state as the ``takeover`` field.
        report_label: add ``has_label`` (True where the person gave input).
    """

    def __init__(self, session: TeleopSession, *, report_takeover=False, report_label=False):
        self.s = session
        self.report_takeover, self.report_label = report_takeover, report_label

    def reset(self, env_ids):
        s = self.s
        s.waiting = s.start_on_input  # the episode starts at the person's first input
        s.current_step = 0
        new_episode = getattr(s.device, "new_episode", None)
        if new_episode is not None:
            new_episode()

    def act(self, obs, info, envs) -> ControlOutput:
        s = self.s
        cmd = s.poll()
        while not cmd.connected and "quit" not in s.pending:
            s.pause_until_reconnected()
            cmd = s.poll()
        if s.waiting:
            cmd = s.wait_for_start(cmd)
        human = command_to_action(cmd, s.action_dim)[None]
        fields = {
            "timestamps": np.array([time.perf_counter()]),
            "late": np.array([s.pacer.last_late]),
        }
        if self.report_takeover:
            fields["takeover"] = np.array([bool(cmd.takeover)])
        if self.report_label:
            fields["has_label"] = np.array([bool(cmd.active)])
        return ControlOutput(executed=human, label=human, fields=fields)
