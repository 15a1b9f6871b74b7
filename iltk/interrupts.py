"""Ctrl-C and SIGTERM that Python swallowed, raised again at the next step.

CPython raises a signal's exception wherever the main thread is. When that is inside a
weakref callback or a ``__del__`` (importlib's module-lock callback, for one), the
exception is printed as "Exception ignored in ..." and dropped, and the command would run
on to its end as if nobody had pressed Ctrl-C. The command line's handlers record each
interrupt here before raising it; the training and control loops call :func:`check` once
a step, which raises a recorded interrupt that never arrived. A handled interrupt is
cleared by :func:`clear`.
"""

from __future__ import annotations

_pending: type[BaseException] | None = None


def note(kind: type[BaseException]) -> None:
    """Record an interrupt that is being raised (from a signal handler)."""
    global _pending
    _pending = kind


def clear() -> None:
    """The recorded interrupt was handled (or the command is over)."""
    global _pending
    _pending = None


def check() -> None:
    """Raise a recorded interrupt: one that a callback swallowed still stops the work."""
    global _pending
    if _pending is not None:
        kind, _pending = _pending, None
        raise kind()
