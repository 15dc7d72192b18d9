"""When to re-subscribe gapped streams with ``resume``: at once, coalesced, and again until filled.

Venues rate-limit commands (TickDB answers code 3001 and drops the command), and an ack can be
lost with its connection, so one request per gap is not enough and one request per frame is too
many. The rule: a stream with an open gap is asked for again every ``retry_s`` until the gap is
filled or lost, requests for one channel go out as one command, and commands are spaced at least
``min_interval_s`` apart.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastfeed import defaults
from fastfeed.derive.streams import StreamKey

__all__ = ["ResyncScheduler"]


class ResyncScheduler:
    """Tracks when each stream was last asked for; the caller supplies the clock readings."""

    def __init__(
        self,
        retry_s: float = defaults.RESYNC_RETRY_S,
        min_interval_s: float = defaults.RESYNC_MIN_INTERVAL_S,
    ) -> None:
        self._retry = retry_s
        self._min_interval = min_interval_s
        self._asked: dict[StreamKey, float] = {}
        self._last_command = float("-inf")

    def asked(self, keys: Iterable[StreamKey], now: float) -> None:
        """Note that ``keys`` were (re)subscribed with resume at ``now`` (e.g. on connect)."""
        for key in keys:
            self._asked[key] = now

    def due(self, gapped: set[StreamKey], now: float) -> dict[str, list[str]]:
        """Channel -> symbols to re-subscribe now; marks them asked. Empty if too soon."""
        for key in [k for k in self._asked if k not in gapped]:
            del self._asked[key]  # filled or lost: forget it
        if now - self._last_command < self._min_interval:
            return {}
        out: dict[str, list[str]] = {}
        for key in sorted(gapped):
            if now - self._asked.get(key, float("-inf")) >= self._retry:
                out.setdefault(key.channel, []).append(key.symbol)
                self._asked[key] = now
        if out:
            self._last_command = now
        return out
