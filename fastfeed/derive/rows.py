"""The rows derivation hands to the store: plain data, no SQLite (store.py writes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fastfeed.derive.streams import Gap

__all__ = ["Batch", "BookRow", "MessageRow", "SnapshotRow", "StreamCheckpoint"]


class MessageRow(NamedTuple):
    """One recorded data message: the exact frame and where it sits in its stream and the log.

    A named tuple whose fields are the ``messages`` table's columns in order, so a batch of
    rows is bound to the INSERT as it is (made once per message: cheaper than a dataclass).
    """

    venue: str
    channel: str
    symbol: str
    epoch: int  # the stream's epoch ``seq`` belongs to (0 until a venue restart)
    seq: int | None
    recv_ns: int
    lsn: int
    frame: bytes
    binary: bool


class BookRow(NamedTuple):
    """An order-book snapshot of one depth stream (levels as [price, size] strings)."""

    venue: str
    channel: str
    symbol: str
    seq: int | None
    recv_ns: int
    ts_ms: int | None
    bids: list[Any]
    asks: list[Any]
    epoch: int = 0


class SnapshotRow(NamedTuple):
    """A venue snapshot fetched over REST (HTTP 200): the exact body, ``seq`` its update id.

    A table added in place (``CREATE TABLE IF NOT EXISTS``): a data dir of an older fastfeed
    gets it empty, so the format version stays.
    """

    venue: str
    channel: str
    symbol: str
    seq: int
    recv_ns: int
    lsn: int
    url: str
    body: bytes


@dataclass(frozen=True, slots=True)
class StreamCheckpoint:
    """Per-stream totals and position as of a batch."""

    venue: str
    channel: str
    symbol: str
    last_seq: int | None
    last_recv_ns: int | None
    records: int
    duplicates: int
    first_seq: int | None
    epoch: int = 0  # first_seq and last_seq are of this epoch


@dataclass(slots=True)
class Batch:
    """Everything derived from the journal up to ``applied_lsn``: committed as one transaction."""

    applied_lsn: int
    messages: list[MessageRow]
    books: list[BookRow]
    gaps: list[Gap]
    streams: list[StreamCheckpoint]
    tracker_state: dict[str, Any] | None
    subscriptions: dict[str, list[str]] | None
    counters: dict[str, int] | None
    snapshots: list[SnapshotRow] = field(default_factory=list)
