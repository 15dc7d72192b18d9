"""Names shared by the tracker, the store and the recorder: a stream's key and a gap in it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Gap", "GapState", "StreamKey"]


class StreamKey(NamedTuple):
    """One subscribed stream: a channel (``depth``, ``trade``, ``ticker``) of one symbol.

    A named tuple, not a dataclass: it is hashed once per message, and a tuple hashes in C.
    """

    channel: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.channel}:{self.symbol}"


class GapState(enum.StrEnum):
    """Where a gap stands: still being backfilled, backfilled, or gone for good."""

    OPEN = "open"
    FILLED = "filled"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class Gap:
    """A missing range of one stream.

    With sequence numbers, ``from_seq``..``to_seq`` (inclusive) is the missing range. Without
    them (plain TickDB), the gap is the time window ``from_ns``..``to_ns`` in which the recorder
    could not have received anything (a disconnect or a stall); its seq bounds are ``None``.
    ``gap_id`` is stable for the life of the gap so the ledger can update it in place.
    ``epoch`` is the stream's epoch the seqs belong to (it counts venue restarts; see
    fastfeed/derive/sequence.py).
    """

    gap_id: int
    key: StreamKey
    from_seq: int | None
    to_seq: int | None
    from_ns: int
    to_ns: int | None
    state: GapState
    reason: str
    epoch: int = 0
