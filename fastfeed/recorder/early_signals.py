"""Catch SIGTERM/SIGINT from the first line of `fastfeed run` until the event loop takes over.

Importing uvloop, picows and the rest takes a few hundred milliseconds; a SIGTERM in that window
would otherwise kill the process with the default action instead of stopping it cleanly.
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["install", "take"]

_pending: list[signal.Signals] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _pending.append(signal.Signals(signum))


def install() -> None:
    """Remember stop signals until ``take`` is called (by then the loop handlers are in place)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _remember)


def take() -> list[signal.Signals]:
    """The stop signals that arrived before the loop's handlers; clears the list."""
    taken = list(_pending)
    _pending.clear()
    return taken
