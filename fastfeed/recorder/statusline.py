"""The live one-line status: rewritten in place on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from fastfeed import defaults

__all__ = ["Status", "StatusReporter"]

log = logging.getLogger("fastfeed.status")

_CLEAR_LINE = "\r\x1b[2K"  # carriage return, then erase the whole line (ECMA-48 EL 2)


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

    def __init__(
        self,
        source: Callable[[], Status],
        *,
        tty: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self._source = source
        self._stream = sys.stderr if stream is None else stream  # where logs go too
        self._tty = self._stream.isatty() if tty is None else tty
        self._interval = defaults.STATUS_INTERVAL_S if self._tty else defaults.LOG_STATUS_INTERVAL_S
        self._last_frames = 0
        self._last_time = time.monotonic()
        self._shown = False  # the status line is on screen, unterminated

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

    def fit(self, text: str) -> str:
        """``text`` cut to the terminal's width, so the line never wraps (and scrolls)."""
        width = shutil.get_terminal_size().columns - 1
        return text if len(text) <= width else text[: max(width - 1, 0)] + "…"

    def filter(self, record: logging.LogRecord) -> bool:
        """A log handler filter: erase the status line before a log line is written over it."""
        if self._shown:
            self._stream.write(_CLEAR_LINE)
            self._shown = False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Report until ``stop`` is set."""
        handlers = logging.getLogger().handlers[:] if self._tty else []
        for handler in handlers:
            handler.addFilter(self)
        try:
            await self._report(stop)
        finally:
            for handler in handlers:
                handler.removeFilter(self)
            if self._shown:
                self._stream.write("\n")
                self._shown = False

    async def _report(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._interval)
            except TimeoutError:
                text = self.line()
                if self._tty:
                    self._stream.write(f"{_CLEAR_LINE}{self.fit(text)}")
                    self._stream.flush()
                    self._shown = True
                else:
                    log.info("%s", text)
