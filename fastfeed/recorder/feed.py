"""The journal-first frame path: every record the recorder takes in is journaled before anything
else looks at it, and only the frames the Cython sink cannot settle reach Python.

Data frames take the sink (fastfeed/recorder/_sink.pyx): journaled from picows' buffer, scanned
in C, and handed here (``on_unusual_frame``) only when they are not a known stream's next seq.
Here the venue adapter reads such a frame for what cannot wait for the applier: a fatal
rejection stops the recorder at once, and the applier is woken so gaps are resynced promptly.
Everything else about a frame's meaning is derived later from the journal, in batches
(fastfeed/recorder/snapshotter.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import picows

from fastfeed.errors import FastfeedError, JournalError, VenueError
from fastfeed.journal import FLAG_BINARY, FsyncMode, Journal, RecordKind
from fastfeed.recorder._sink import FrameSink, Scanner, StreamTable
from fastfeed.recorder.connection import Connection
from fastfeed.venues.base import VenueAdapter
from fastfeed.venues.events import VenueRejected

__all__ = ["CONNECTION_SLOT", "Feed", "rejection_error"]

log = logging.getLogger("fastfeed.recorder")

CONNECTION_SLOT = 1  # the journal header's stream field: this recorder's one venue connection


def rejection_error(adapter: VenueAdapter, code: int, message: str) -> VenueError:
    """The error a fatal venue rejection stops the recorder with: an invalid API key, or (a
    public feed) a channel or symbol the venue does not have."""
    return VenueError(message, code=code, hint=adapter.rejection_hint)


class Feed:
    """Journals what comes in and goes out; tells the recorder what cannot wait."""

    def __init__(
        self,
        journal: Journal,
        adapter: VenueAdapter,
        fsync: FsyncMode,
        *,
        fail: Callable[[FastfeedError], None],
        wake_applier: Callable[[], None],
        stop_reading: Callable[[], None],
    ) -> None:
        self._journal = journal
        self._adapter = adapter
        self._fsync = fsync
        self._fail = fail
        self._wake_applier = wake_applier
        self._stop_reading = stop_reading
        self._scanner = Scanner(adapter.name)
        # One table for the recorder's life: a stream keeps its place across reconnects.
        self._table = StreamTable()
        self._sink: FrameSink | None = None  # the current connection's
        self._link_sinks: dict[int, FrameSink] = {}  # slot -> sink: the sharded connections'
        self._earlier_frames = 0  # data frames of the connections before it
        self._refused = False
        self._python_frames = 0  # fragmented messages, reassembled in Python

    @property
    def scan(self) -> Callable[[bytes], tuple[bytes, int] | None]:
        """The venue's C scanner as the pipeline's batch path uses it."""
        return self._scanner.key_seq

    @property
    def frames(self) -> int:
        """Data frames received (every connection of this run)."""
        current = self._sink.frames if self._sink is not None else 0
        current += sum(sink.frames for sink in self._link_sinks.values())
        return self._earlier_frames + current + self._python_frames

    def listener(self, connection: Connection) -> picows.WSListener:
        """The picows listener for one connection: the Cython sink."""
        sink = FrameSink(
            self._journal.writer,
            self._scanner,
            self._table,
            self,
            connection,
            CONNECTION_SLOT,
            self._journal if self._fsync is FsyncMode.ALWAYS else None,
            connection.max_frame_bytes,
        )
        if self._sink is not None:
            self._earlier_frames += self._sink.frames
        self._sink = sink
        return sink

    def link_listener(self, connection: Connection, slot: int) -> FrameSink:
        """The sink for one of several connections at once (a venue's sharded, rotated ones):
        journaled under ``slot``, with a stream table of its own (two connections of a
        rotation deliver the same ids). Its unusual frames wait for the applier's next batch,
        but for scanned ones (a stream's first push, or a break: gap recovery starts sooner)."""
        sink = FrameSink(
            self._journal.writer,
            self._scanner,
            StreamTable(),
            _LinkFrames(self._scanner, self._wake_applier, self.on_journal_error),
            connection,
            slot,
            self._journal if self._fsync is FsyncMode.ALWAYS else None,
            connection.max_frame_bytes,
        )
        self.release(slot)
        self._link_sinks[slot] = sink
        return sink

    def release(self, slot: int) -> None:
        """Connection ``slot`` is gone for good: keep its count, drop its sink."""
        sink = self._link_sinks.pop(slot, None)
        if sink is not None:
            self._earlier_frames += sink.frames

    def append(
        self, kind: RecordKind, payload: bytes, flags: int = 0, slot: int = CONNECTION_SLOT
    ) -> int | None:
        """Journal one record from Python; its LSN, or None once the journal has refused."""
        if self._refused:
            return None  # nothing more is accepted (the venue replays what follows)
        recv_ns = time.time_ns()
        try:
            return self._journal.append(kind, slot, recv_ns, payload, flags)
        except JournalError as exc:
            self.on_journal_error(exc)
            return None

    def wake_applier(self) -> None:
        """Have the applier derive what is journaled now (a decision is waiting on it)."""
        self._wake_applier()

    # -- the sink's handler --------------------------------------------------------------------
    def on_journal_error(self, exc: JournalError) -> None:
        """The journal refused a record: stop taking any (recording ends, in one line)."""
        if not self._refused:
            log.error("journal refused a record: %s", exc)
        self._refused = True
        self._fail(exc)
        self._stop_reading()

    def on_unusual_frame(self, lsn: int, recv_ns: int, payload: bytes, binary: bool) -> None:
        """A journaled frame the sink could not settle: the applier derives it soon; a fatal
        rejection stops recording now."""
        self._wake_applier()
        event = self._adapter.parse(payload, recv_ns, binary=binary)
        if type(event) is VenueRejected and event.fatal:
            self._fail(rejection_error(self._adapter, event.code, event.message))

    # -- the Python path (fragmented messages) -----------------------------------------------
    def on_frame(self, payload: bytes, binary: bool) -> None:
        """A whole message reassembled in Python: journal it, then treat it as unusual."""
        self._python_frames += 1
        lsn = self.append(RecordKind.INBOUND, payload, FLAG_BINARY if binary else 0)
        if lsn is not None:
            self.on_unusual_frame(lsn, time.time_ns(), payload, binary)


class _LinkFrames:
    """The handler of a sharded connection's sink (``Feed.link_listener``)."""

    def __init__(
        self,
        scanner: Scanner,
        wake_applier: Callable[[], None],
        on_journal_error: Callable[[JournalError], None],
    ) -> None:
        self._spans = scanner.spans
        self._wake_applier = wake_applier
        self.on_journal_error = on_journal_error

    def on_unusual_frame(self, lsn: int, recv_ns: int, payload: bytes, binary: bool) -> None:
        """A scanned frame the sink could not settle starts or breaks its stream: derive it
        soon. Other frames (acks, pushes the scanner does not read) wait for the next batch."""
        if not binary and self._spans(payload) is not None:
            self._wake_applier()
