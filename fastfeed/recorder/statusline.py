"""The live one-line status: rewritten in place on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastfeed import defaults

__all__ = ["Status", "StatusReporter"]

log = logging.getLogger("fastfeed.status")


@dataclass(frozen=True, slots=True)
class Status:
    """What the operator sees: totals since start plus the journal's durability lag."""

    frames: int
    records: int
    accepted_lsn: int
    durable_lsn: int
    applied_lsn: int
    gaps_open: int
    reconnects: int
    malformed: int
    connected: bool


class StatusReporter:
    """Samples ``source()`` and shows the rate since the previous sample."""

    def __init__(self, source: Callable[[], Status], *, tty: bool | None = None) -> None:
        self._source = source
        self._tty = sys.stderr.isatty() if tty is None else tty
        self._interval = defaults.STATUS_INTERVAL_S if self._tty else defaults.LOG_STATUS_INTERVAL_S
        self._last_frames = 0
        self._last_time = time.monotonic()

    def line(self) -> str:
        """Format one status line from a fresh sample."""
        s = self._source()
        now = time.monotonic()
        rate = (s.frames - self._last_frames) / max(now - self._last_time, 1e-9)
        self._last_frames, self._last_time = s.frames, now
        return (
            f"{'up' if s.connected else 'DOWN'} {rate:,.0f} msg/s | records {s.records:,}"
            f" | durable lag {s.accepted_lsn - s.durable_lsn} | snapshot lag"
            f" {s.accepted_lsn - s.applied_lsn} | gaps open {s.gaps_open}"
            f" | reconnects {s.reconnects} | malformed {s.malformed}"
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Report until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._interval)
            except TimeoutError:
                text = self.line()
                if self._tty:
                    sys.stderr.write(f"\r\x1b[2K{text}")
                    sys.stderr.flush()
                else:
                    log.info("%s", text)
        if self._tty:
            sys.stderr.write("\n")
