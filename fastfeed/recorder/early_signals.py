"""Catch SIGTERM/SIGINT/SIGHUP from the first line of any command until it is ready for them.

Importing uvloop, picows, orjson and the rest takes a few hundred milliseconds. A SIGTERM in
that window would kill `run` with the default action instead of stopping it cleanly, a SIGHUP
would kill it outright, and a Ctrl-C raises KeyboardInterrupt inside whatever module is being
imported: orjson 3.x's module init then crashes the interpreter (SIGSEGV, seen here). So the
signals are only remembered until the command's modules are loaded: `run` then hands them to
the event loop (``take``), every other command restores the defaults (``release``).
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["install", "release", "take"]

_CAUGHT = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_pending: list[signal.Signals] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _pending.append(signal.Signals(signum))


def install() -> None:
    """Remember stop and reload signals until ``take`` (by then the loop's handlers are set)."""
    for sig in _CAUGHT:
        signal.signal(sig, _remember)


def take() -> list[signal.Signals]:
    """The signals that arrived before the loop's handlers, in order; clears the list."""
    taken = list(_pending)
    _pending.clear()
    return taken


def release() -> list[signal.Signals]:
    """Restore the default handlers (Ctrl-C raises KeyboardInterrupt again); returns ``take()``."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    return take()
