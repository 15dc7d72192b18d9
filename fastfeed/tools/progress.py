"""A one-line progress display on stderr for long commands (verify, export), terminals only.

Off unless stderr is a TTY, so pipes, logs and tests see nothing. Redrawn with ``\\r`` at most
every ``defaults.PROGRESS_INTERVAL_S``; no dependency needed.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from fastfeed import defaults

__all__ = ["Progress"]

_WIDTH = 30  # characters in the bar


class Progress:
    """``done`` out of ``total`` units of ``what``; ``update`` is cheap to call per item."""

    def __init__(self, what: str, total: int, *, stream: IO[str] | None = None) -> None:
        self._out = sys.stderr if stream is None else stream
        self._on = self._out.isatty()
        self._what = what
        self._total = max(total, 0)
        self._next_draw = 0.0

    def update(self, done: int) -> None:
        """Note progress; redraws only when a terminal is attached and the period has passed."""
        if not self._on:
            return
        now = time.monotonic()
        if now < self._next_draw:
            return
        self._next_draw = now + defaults.PROGRESS_INTERVAL_S
        self._draw(done)

    def _draw(self, done: int) -> None:
        if self._total:
            frac = min(done / self._total, 1.0)
            bar = "#" * int(frac * _WIDTH)
            text = f"{self._what} [{bar:<{_WIDTH}}] {done}/{self._total} ({frac:.0%})"
        else:
            text = f"{self._what}: {done}"
        self._out.write(f"\r{text}\x1b[K")
        self._out.flush()

    def close(self) -> None:
        """Erase the line so the summary that follows starts clean."""
        if self._on:
            self._out.write("\r\x1b[K")
            self._out.flush()
