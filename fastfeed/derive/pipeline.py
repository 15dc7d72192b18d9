"""Journal records in, derived rows out: the one path from the journal to SQLite.

The recorder feeds it each record right after appending it; start-up recovery feeds it the
journal records after SQLite's applied LSN. Both go through ``feed``, so what recovery rebuilds
is exactly what live recording derived. No I/O and no clock: every input carries its LSN and
receive time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from fastfeed import defaults
from fastfeed.derive.gaptally import GapTally
from fastfeed.derive.rest_record import decode_rest
from fastfeed.derive.sequence import REASON_VENUE_RESET, SequenceTracker, StreamStats
from fastfeed.derive.streams import Gap, GapState, StreamKey
from fastfeed.journal.kinds import FLAG_BINARY, FLAG_SHADOW, RecordKind
from fastfeed.logs import RateLimiter
from fastfeed.store import Batch, BookRow, MessageRow, SnapshotRow, StreamCheckpoint
from fastfeed.venues.base import VenueAdapter
from fastfeed.venues.events import (
    Malformed,
    Message,
    Pong,
    Snapshot,
    Subscribed,
    VenueRejected,
)

__all__ = ["FLAG_BINARY", "FLAG_SHADOW", "Pipeline", "Rejection", "StreamCounts"]

log = logging.getLogger("fastfeed.derive.pipeline")


class StreamCounts:
    """Data frames and their bytes per stream since the process started (replay included).

    Mutable and found by the same two lookups as the stream's key, so counting costs two
    attribute increments per frame. It also mirrors the tracker's epoch of the stream (changed
    only by a venue reset), so tagging a message with its epoch costs one attribute read.
    """

    __slots__ = ("bytes", "epoch", "frames", "key")

    def __init__(self, key: StreamKey, epoch: int) -> None:
        self.key = key
        self.epoch = epoch
        self.frames = 0  # duplicates included: every data frame the venue sent for the stream
        self.bytes = 0


@dataclass(frozen=True, slots=True)
class Rejection:
    """A fatal refusal by the venue (invalid key): the recorder must stop, not reconnect."""

    code: int
    message: str


class Pipeline:
    """Adapter + sequence tracker + the rows waiting for the next snapshot."""

    def __init__(self, venue: str, adapter: VenueAdapter) -> None:
        self.venue = venue
        self._adapter = adapter
        self._book_channels = adapter.book_channels
        self._snapshots: list[SnapshotRow] = []
        self._tracker = SequenceTracker()
        self._messages: list[MessageRow] = []
        self._books: dict[StreamKey, tuple[Message, int, int]] = {}
        self._streams: dict[str, dict[str, StreamCounts]] = {}  # channel -> symbol -> counts
        self.gap_tally = GapTally()
        self._last_lsn = 0
        self._cut_lsn = 0
        self._subscriptions: dict[str, list[str]] | None = None
        self._malformed_log = RateLimiter(defaults.MALFORMED_LOG_PER_MIN)
        self.resync: set[StreamKey] = set()
        self.fatal: Rejection | None = None
        self.messages = 0
        self.malformed = 0
        self.rejected = 0
        self.reconnects = 0
        self.venue_resets = 0
        self.snapshots = 0  # REST snapshots applied (this process)
        self._connected_since_start = False

    # -- state from a checkpoint ---------------------------------------------------------------
    def restore(
        self, tracker_state: dict[str, Any] | None, counters: dict[str, int], applied_lsn: int
    ) -> None:
        """Start from the state SQLite holds as of ``applied_lsn``."""
        if tracker_state is not None:
            self._tracker = SequenceTracker.from_checkpoint(tracker_state)
        self.malformed = counters.get("malformed", 0)
        self.rejected = counters.get("rejected", 0)
        self.reconnects = counters.get("reconnects", 0)
        self.venue_resets = counters.get("venue_resets", 0)
        self._last_lsn = self._cut_lsn = applied_lsn
        self.gap_tally = GapTally(self._tracker.gaps())

    # -- the hot path --------------------------------------------------------------------------
    def feed(self, lsn: int, kind: int, recv_ns: int, payload: bytes, flags: int = 0) -> None:
        """Derive whatever one journal record means. Never raises on bad input."""
        self._last_lsn = lsn
        if kind == RecordKind.INBOUND:
            if not flags & FLAG_SHADOW:
                self._inbound(lsn, recv_ns, payload, bool(flags & FLAG_BINARY))
        elif kind == RecordKind.OUTBOUND:
            self._outbound(payload)
        elif kind == RecordKind.CONNECTION:
            self._connection_event(recv_ns, payload)
        elif kind == RecordKind.REST:
            self._rest(lsn, recv_ns, payload)
        elif kind == RecordKind.GAP:
            self._gap_marker(recv_ns, payload)
        elif kind == RecordKind.CONTROL:
            doc = _loads(payload)
            if isinstance(doc, dict) and isinstance(doc.get("subscriptions"), dict):
                self._subscriptions = doc["subscriptions"]
                if doc.get("event") == "started":
                    self._connected_since_start = False

    def _inbound(self, lsn: int, recv_ns: int, payload: bytes, binary: bool) -> None:
        event = self._adapter.parse(payload, recv_ns, binary=binary)
        if type(event) is Message:
            # One key object per stream, found by two str-keyed lookups (str hashes are cached).
            by_symbol = self._streams.get(event.channel)
            counts = by_symbol.get(event.symbol) if by_symbol is not None else None
            if counts is None:
                counts = self._new_counts(StreamKey(event.channel, event.symbol))
            counts.frames += 1
            counts.bytes += len(payload)
            key = counts.key
            if event.seq is not None:
                if event.first_seq is None:
                    obs = self._tracker.observe(key, event.seq, recv_ns)
                else:
                    obs = self._tracker.observe_range(key, event.first_seq, event.seq, recv_ns)
                if obs.duplicate:
                    return
                if obs.reset is not None:
                    self._venue_reset(lsn, key, obs.reset)
                if obs.resync_from is not None:
                    self.resync.add(key)
            else:
                self._tracker.observe_unsequenced(key, recv_ns)
            self.messages += 1
            self._messages.append(
                MessageRow(
                    self.venue,
                    key.channel,
                    key.symbol,
                    event.seq,
                    recv_ns,
                    lsn,
                    payload,
                    binary,
                    counts.epoch,
                )
            )
            if key.channel in self._book_channels:
                # Only the latest book per stream is snapshotted; build its row at cut time.
                self._books[key] = (event, recv_ns, counts.epoch)
        elif type(event) is Pong:
            pass
        elif type(event) is Subscribed:
            if event.streams and event.channel is not None:
                for symbol, rng in event.streams.items():
                    key = StreamKey(event.channel, symbol)
                    for gap in self._tracker.on_ack(key, rng.first_seq, rng.head_seq, recv_ns):
                        if gap.reason.startswith(REASON_VENUE_RESET):
                            self._venue_reset(lsn, key, gap)
        elif type(event) is Malformed:
            self.malformed += 1
            if self._malformed_log.allow():
                log.warning("malformed frame at LSN %d kept in the journal: %s", lsn, event.reason)
        elif type(event) is VenueRejected:
            self.rejected += 1
            log.error("venue refused %s (code %d): %s", event.cmd, event.code, event.message)
            if event.fatal:
                self.fatal = Rejection(event.code, event.message)

    def _rest(self, lsn: int, recv_ns: int, payload: bytes) -> None:
        """A REST response: a snapshot (HTTP 200) resyncs its stream; others are kept as is."""
        decoded = decode_rest(payload)
        if isinstance(decoded, str):
            self._malformed(lsn, f"REST record: {decoded}")
            return
        head, body = decoded
        if head.status != 200:
            return  # a refusal (429, 418): journaled for the record, nothing to derive
        event = self._adapter.parse_snapshot(head.channel, head.symbol, body)
        if type(event) is not Snapshot:
            reason = event.reason if type(event) is Malformed else "not a snapshot"
            self._malformed(lsn, f"REST body of {head.url}: {reason}")
            return
        key = StreamKey(event.channel, event.symbol)
        self._tracker.snapshot(key, event.seq, recv_ns)
        self.snapshots += 1
        self._snapshots.append(
            SnapshotRow(
                self.venue, key.channel, key.symbol, event.seq, recv_ns, lsn, head.url, body
            )
        )

    def _gap_marker(self, recv_ns: int, payload: bytes) -> None:
        """The recorder gave up on a gap nothing can fill: the ids up to ``upto`` are LOST."""
        doc = _loads(payload)
        if not isinstance(doc, dict) or doc.get("event") != "lost":
            return
        channel, symbol, upto = doc.get("channel"), doc.get("symbol"), doc.get("upto")
        reason = doc.get("reason")
        if isinstance(channel, str) and isinstance(symbol, str) and type(upto) is int:
            why = reason if isinstance(reason, str) else "lost"
            self._tracker.lose(StreamKey(channel, symbol), upto, recv_ns, why)

    def _malformed(self, lsn: int, reason: str) -> None:
        self.malformed += 1
        if self._malformed_log.allow():
            log.warning("malformed record at LSN %d kept in the journal: %s", lsn, reason)

    def _new_counts(self, key: StreamKey) -> StreamCounts:
        """The counts of a stream first seen by this process, at the tracker's epoch of it."""
        stats = self._tracker.stream_stats(key)
        counts = StreamCounts(key, stats.epoch if stats is not None else 0)
        self._streams.setdefault(key.channel, {})[key.symbol] = counts
        return counts

    def _venue_reset(self, lsn: int, key: StreamKey, marker: Gap) -> None:
        # The marker belongs to the new epoch: the stream's next messages are tagged with it.
        by_symbol = self._streams.get(key.channel)
        counts = by_symbol.get(key.symbol) if by_symbol is not None else None
        if counts is None:
            counts = self._new_counts(key)
        counts.epoch = marker.epoch
        # Rare and important (the stream's numbering started over): always logged.
        self.venue_resets += 1
        log.warning(
            "%s at LSN %d: %s; recording it as epoch %d of the stream",
            key,
            lsn,
            marker.reason,
            marker.epoch,
        )

    def _outbound(self, payload: bytes) -> None:
        # A subscribe with resume tells the tracker where each stream was asked to restart, so
        # the ack's first_seq can be judged against it (history lost or not).
        doc = _loads(payload)
        if not isinstance(doc, dict) or doc.get("cmd") != "subscribe":
            return
        data = doc.get("data")
        if isinstance(data, dict) and isinstance(data.get("resume"), dict):
            channel = data.get("channel")
            for symbol, seq in data["resume"].items():
                if isinstance(channel, str) and isinstance(seq, int):
                    self._tracker.resume_requested(StreamKey(channel, symbol), seq)

    def _connection_event(self, recv_ns: int, payload: bytes) -> None:
        doc = _loads(payload)
        event = doc.get("event") if isinstance(doc, dict) else None
        if event == "connected":
            # A reconnect is a connection after the first one of a recorder run.
            if self._connected_since_start:
                self.reconnects += 1
            self._connected_since_start = True
            self._tracker.connection_restored(recv_ns)
        elif event == "disconnected":
            self._tracker.connection_lost(recv_ns)

    # -- what the recorder asks ----------------------------------------------------------------
    def gapped_streams(self) -> set[StreamKey]:
        """Streams with a gap still expected to fill (a resume subscribe can backfill it)."""
        return {g.key for g in self._tracker.gaps() if g.state is GapState.OPEN}

    def resume_point(self, key: StreamKey) -> int | None:
        """The next seq to ask the venue for on this stream (None: start live)."""
        return self._tracker.resume_point(key)

    def tracker_streams(self) -> list[StreamKey]:
        return self._tracker.streams()

    def gaps_open(self) -> int:
        return self._tracker.open_gap_count()

    def stream_counts(self) -> list[StreamCounts]:
        """Frames and bytes of every stream seen by this process (metrics read these)."""
        return [counts for by_symbol in self._streams.values() for counts in by_symbol.values()]

    def stream_stats(self, key: StreamKey) -> StreamStats | None:
        """The tracker's counters of one stream (None if never seen)."""
        return self._tracker.stream_stats(key)

    # -- snapshots -----------------------------------------------------------------------------
    def cut(self) -> Batch | None:
        """Everything derived up to the last fed LSN, as one batch (None if nothing new)."""
        if self._last_lsn == self._cut_lsn:
            return None
        streams = [
            StreamCheckpoint(
                self.venue,
                key.channel,
                key.symbol,
                st.last_seq,
                st.last_recv_ns,
                st.records,
                st.duplicates,
                st.first_seq,
                st.epoch,
            )
            for key, st in self._tracker.changed_stats()
        ]
        gaps = self._tracker.changed_gaps()
        self.gap_tally.add(gaps)
        batch = Batch(
            applied_lsn=self._last_lsn,
            messages=self._messages,
            books=[
                BookRow(
                    self.venue,
                    key.channel,
                    key.symbol,
                    ev.seq,
                    recv_ns,
                    ev.ts_ms,
                    ev.data.get("bids", []),
                    ev.data.get("asks", []),
                    epoch,
                )
                for key, (ev, recv_ns, epoch) in self._books.items()
            ],
            gaps=gaps,
            streams=streams,
            snapshots=self._snapshots,
            tracker_state=self._tracker.to_checkpoint(),
            subscriptions=self._subscriptions,
            counters={
                "malformed": self.malformed,
                "rejected": self.rejected,
                "reconnects": self.reconnects,
                "venue_resets": self.venue_resets,
            },
        )
        self._messages = []
        self._snapshots = []
        self._books = {}
        self._cut_lsn = self._last_lsn
        return batch


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
