"""What the window tells the person: the status lines and who is in control."""

from __future__ import annotations

from collections.abc import Sequence

from teleop.devices import FINE_SCALE
from teleop.window import HUMAN_COLOR, POLICY_COLOR, RECORD_COLOR


def achieved_hz(times: Sequence[float]) -> float:
    """The rate of the recent step timestamps (0 until there are enough)."""
    if len(times) > 2 and times[-1] > times[0]:
        return (len(times) - 1) / (times[-1] - times[0])
    return 0.0


def status_lines(
    *,
    task: str,
    mode: str,
    episode: int,
    step: int,
    max_steps: int | None,
    control_freq: float,
    success: bool,
    fine: bool,
    hz: float,
    missed_fraction: float,
    saved: int,
    out_name: str,
    frames_skipped: int = 0,
    display_level: int = 0,
    dart_noise: float = 0.0,
    policy_version: int | None = None,
    retraining: bool = False,
    waiting: bool = False,
) -> list[str]:
    """The panel's status: task and mode, episode and time left (or that it waits for the
    first input), success and speed, the achieved control rate (steps actually run), what
    was saved, and the policy version in correction modes."""
    left = f"   {(max_steps - step) / control_freq:.1f} s left" if max_steps else ""
    progress = (
        f"episode {episode}   waiting: starts at your first input"
        if waiting
        else f"episode {episode}   step {step}{left}"
    )
    lines = [
        f"{task}   {mode}",
        progress,
        f"success {'YES' if success else 'no'}   speed "
        + (f"{FINE_SCALE:.0%} (fine)" if fine else "100%"),
        (f"{hz:4.1f}/{control_freq:.0f} Hz" if hz else f"-/{control_freq:.0f} Hz")
        + f"   missed {missed_fraction:.1%}",
        f"saved {saved} -> {out_name}",
    ]
    if display_level:  # the display gave up quality to keep the control rate
        what = ("no shadows", "no shadows, 70% size", "no shadows, 50% size")[display_level - 1]
        lines.append(f"display: {what} (CPU busy)")
    if frames_skipped:
        lines.append(f"display frames skipped {frames_skipped}")
    if dart_noise:
        lines.append(f"DART noise sigma {dart_noise}")
    if policy_version is not None:
        lines.append(f"policy v{policy_version}" + ("   retraining..." if retraining else ""))
    return lines


def badge(mode: str, waiting: bool, human_in_control: bool) -> tuple[str, tuple[int, int, int]]:
    """Who is in control, in a colour the person cannot miss."""
    if waiting:
        return "READY", (150, 150, 150)
    if mode == "record":
        return "RECORDING", RECORD_COLOR
    return ("HUMAN", HUMAN_COLOR) if human_in_control else ("POLICY", POLICY_COLOR)
