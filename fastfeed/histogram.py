"""A fixed-bucket histogram cheap enough to observe on the journal's commit thread.

One thread observes, any thread may take a snapshot: copying a list is atomic under the GIL, so
a snapshot's bucket counts always agree with each other (its sum may lag by one observation).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["Histogram"]


class Histogram:
    """Counts of observed values per bucket; bucket ``i`` holds values <= ``bounds[i]``."""

    __slots__ = ("_counts", "_sum", "bounds")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last bucket: above every bound
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value (a few hundred ns: a bisect and two additions)."""
        self._counts[bisect_left(self.bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> tuple[list[int], float]:
        """Per-bucket counts (not cumulative; the last is above every bound) and the sum."""
        return list(self._counts), self._sum
