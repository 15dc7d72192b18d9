"""Per-stream counts of gaps opened, filled and lost, for the metrics endpoint.

Fed the tracker's changed gaps at each snapshot cut (the same list the gap ledger gets), so it
counts what the ledger records, without a query. A gap is new when its id is above every id
seen before (the tracker hands out ids in increasing order); an open gap is counted once more
when it resolves. A plain stream's time gap is LOST from birth and later only gets its end
time: such updates of resolved gaps are not counted again.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastfeed.derive.streams import Gap, GapState, StreamKey

__all__ = ["GapCounts", "GapTally"]


class GapCounts:
    """Gaps of one stream since the process started (start-up replay included)."""

    __slots__ = ("filled", "lost", "opened")

    def __init__(self) -> None:
        self.opened = 0
        self.filled = 0
        self.lost = 0


class GapTally:
    """Counts gap transitions from the tracker's ``changed_gaps()`` lists."""

    def __init__(self, known: Iterable[Gap] = ()) -> None:
        """``known``: the gaps a restored tracker already holds (not counted as new)."""
        known = list(known)
        self.by_stream: dict[StreamKey, GapCounts] = {}
        self._open = {g.gap_id for g in known if g.state is GapState.OPEN}
        self._top = max((g.gap_id for g in known), default=0)

    def add(self, gaps: Iterable[Gap]) -> None:
        """Count the gaps opened and resolved in one batch of changed gaps."""
        top = self._top
        for gap in gaps:
            counts = self.by_stream.get(gap.key)
            if counts is None:
                counts = self.by_stream[gap.key] = GapCounts()
            if gap.gap_id > top:
                counts.opened += 1
                self._top = max(self._top, gap.gap_id)
            elif gap.gap_id not in self._open:
                continue  # a resolved gap updated again (a time gap getting its end)
            if gap.state is GapState.OPEN:
                self._open.add(gap.gap_id)
                continue
            self._open.discard(gap.gap_id)
            if gap.state is GapState.FILLED:
                counts.filled += 1
            else:
                counts.lost += 1
