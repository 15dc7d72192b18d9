"""Latency bookkeeping shared by the load runs: HDR histograms and a journal that stamps durability.

``DurableStampJournal`` is the real ``Journal`` plus two clock reads: when ``append`` returns
(accepted) and when a group commit publishes ``durable_lsn`` (durable). Only the benchmark
probe installs it; the recorder itself never pays for it.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from hdrh.histogram import HdrHistogram

from fastfeed.journal import Journal

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
LOWEST_NS = 1
HIGHEST_NS = 120 * 1_000_000_000  # two minutes: anything slower is a stuck run, clamp it
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    """A nanosecond histogram with 0.1 % resolution."""
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)


def record(hist: HdrHistogram, value_ns: int) -> None:
    """Record one latency, clamped into the histogram's range."""
    hist.record_value(min(max(value_ns, LOWEST_NS), HIGHEST_NS))


def summary(hist: HdrHistogram) -> dict[str, Any]:
    """Count, mean and the reported percentiles in microseconds."""
    out: dict[str, Any] = {"count": hist.get_total_count()}
    if out["count"] == 0:
        return out
    out["mean_us"] = hist.get_mean_value() / 1000
    for p in PERCENTILES:
        out[f"p{p:g}_us"] = hist.get_value_at_percentile(p) / 1000
    out["max_us"] = hist.get_max_value() / 1000
    return out


class DurableStampJournal(Journal):
    """A ``Journal`` that times acceptance and durability of the records it is told to watch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.accepted_ns = 0
        self.durable = new_histogram()
        # (lsn, origin_ns) appended by the loop thread, consumed by whichever thread publishes
        # durability (the commit thread; the loop thread in ALWAYS mode and in wait_durable).
        self.pending: collections.deque[tuple[int, int]] = collections.deque()
        self._consume = threading.Lock()
        super().__init__(*args, **kwargs)

    def append(self, kind: int, stream: int, recv_ns: int, payload: Any, flags: int = 0) -> int:
        lsn = super().append(kind, stream, recv_ns, payload, flags)
        self.accepted_ns = time.monotonic_ns()
        return lsn

    def watch(self, lsn: int, origin_ns: int) -> None:
        """Record ``durable time - origin_ns`` once ``lsn`` is durable."""
        self.pending.append((lsn, origin_ns))

    def _notify_waiters(self) -> None:
        now = time.monotonic_ns()
        durable = self.durable_lsn
        pending = self.pending
        with self._consume:
            while pending and pending[0][0] <= durable:
                record(self.durable, now - pending.popleft()[1])
        super()._notify_waiters()
