"""Catch SIGTERM/SIGINT/SIGHUP from the first line of `fastfeed run` until the loop takes over.

Importing uvloop, picows and the rest takes a few hundred milliseconds; a SIGTERM in that window
would otherwise kill the process with the default action instead of stopping it cleanly, and a
SIGHUP (whose default action also terminates) would kill it outright.
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["install", "take"]

_pending: list[signal.Signals] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _pending.append(signal.Signals(signum))


def install() -> None:
    """Remember stop and reload signals until ``take`` (by then the loop's handlers are set)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _remember)


def take() -> list[signal.Signals]:
    """The signals that arrived before the loop's handlers, in order; clears the list."""
    taken = list(_pending)
    _pending.clear()
    return taken
