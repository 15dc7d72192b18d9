"""Journal records in, derived rows and actions out: the one path from the journal to SQLite.

The recorder's applier feeds it journal records in batches (``feed_records``), live and at
start-up alike, so what recovery rebuilds is exactly what live recording derived. A data frame
whose stream and seq a venue scanner can read and that continues its stream is a row at once
(no JSON parse); everything else goes through the venue adapter and the sequence tracker, the
authority on meaning. A depth frame's JSON is parsed only for the latest book of its stream at
cut time. No I/O, no clock and no logging: each input carries its LSN and receive time, and
what the shell must do or report comes back as ``Actions``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, cast

import orjson

from fastfeed.derive.continuity import CoinbaseSequence, Verdict
from fastfeed.derive.gaptally import GapTally
from fastfeed.derive.kraken_book import BookCheck, KrakenBooks
from fastfeed.derive.rest_record import decode_rest
from fastfeed.derive.rows import Batch, BookRow, MessageRow, SnapshotRow, StreamCheckpoint
from fastfeed.derive.sequence import (
    REASON_CONNECTION_JUMP,
    REASON_OVERSIZED,
    REASON_RECONNECTED,
    REASON_RESUBSCRIBED,
    REASON_VENUE_RESET,
    SequenceTracker,
    StreamStats,
)
from fastfeed.derive.streams import GapState, StreamKey
from fastfeed.errors import StoreError
from fastfeed.journal.kinds import FLAG_BINARY, FLAG_SHADOW, RecordKind
from fastfeed.venues.base import ShardVenue, VenueAdapter
from fastfeed.venues.events import (
    Malformed,
    Message,
    Pong,
    Snapshot,
    Subscribed,
    VenueRejected,
)
from fastfeed.venues.instream import InStreamVenue, Step
from fastfeed.venues.jsonfields import INT64_MAX

__all__ = [
    "FLAG_BINARY",
    "FLAG_SHADOW",
    "Actions",
    "Pipeline",
    "Record",
    "Rejection",
    "Scan",
    "StreamCounts",
]

# A venue scanner: a frame's stream key bytes and seq, or None (fastfeed/venues/scan.h).
Scan = Callable[[bytes], tuple[bytes, int] | None]
_row = partial(tuple.__new__, MessageRow)  # a MessageRow from one tuple, without __new__'s cost
_SLOTS = "slots"  # checkpoint entry: connection slot -> its numbering (Coinbase)


class Record(Protocol):
    """A journal record as the reader returns it (fastfeed.journal.JournalRecord)."""

    @property
    def lsn(self) -> int: ...
    @property
    def kind(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def recv_ns(self) -> int: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def stream(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    """A fatal refusal by the venue (invalid key): the recorder must stop, not reconnect."""

    code: int
    message: str


@dataclass(slots=True)
class Actions:
    """What the records fed since the last ``take_actions`` ask of the shell."""

    gapped: set[StreamKey] = field(default_factory=set)  # re-subscribe these with resume
    fatal: Rejection | None = None  # stop recording
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (LSN, reason), to log
    rejected: list[str] = field(default_factory=list)  # venue refusals, to log
    resets: list[str] = field(default_factory=list)  # venue restarts seen, to log


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


class _Fast:
    """A stream in its steady state: rows are made from the scan alone until ``next`` breaks.

    ``count`` in-order seqs ending at ``next - 1`` are waiting to be told to the tracker
    (``SequenceTracker.advance``), which happens before any other record is derived.
    """

    __slots__ = ("book", "count", "counts", "next", "prefix", "recv_ns")

    def __init__(self, venue: str, counts: StreamCounts, next_seq: int, book: bool) -> None:
        self.counts = counts
        self.prefix = (venue, counts.key.channel, counts.key.symbol, counts.epoch)
        self.next = next_seq
        self.book = book
        self.count = 0
        self.recv_ns = 0


class _Connection:
    """A connection numbering all its messages in one sequence (Coinbase): the chain, and the
    streams it carried since it connected (a jump may have hidden any of their pushes)."""

    __slots__ = ("sequence", "streams")

    def __init__(self, sequence: CoinbaseSequence | None = None) -> None:
        self.sequence = CoinbaseSequence() if sequence is None else sequence
        self.streams: set[StreamKey] = set()

    def to_doc(self) -> dict[str, Any]:
        """Checkpoint data: a catch-up that starts mid-connection derives as live did."""
        streams = sorted([k.channel, k.symbol] for k in self.streams)
        return {"sequence": self.sequence.to_doc(), "streams": streams}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> _Connection:
        conn = cls(CoinbaseSequence.from_doc(doc["sequence"]))
        conn.streams = {StreamKey(channel, symbol) for channel, symbol in doc["streams"]}
        return conn


class Pipeline:
    """Adapter + sequence tracker + the rows waiting for the next cut."""

    def __init__(self, venue: str, adapter: VenueAdapter, *, scan: Scan | None = None) -> None:
        self.venue = venue
        self._adapter = adapter
        self._book_channels = adapter.book_channels
        # Venues that resync in the feed say which messages are snapshots, resets, keepalives.
        self._step = adapter.step if isinstance(adapter, InStreamVenue) else None
        # ... and some number the messages of a connection, not of a stream: checked per
        # connection slot, and a scanned key names a connection, not a stream (no fast path).
        self._sequenced = None
        if isinstance(adapter, InStreamVenue):
            self._sequenced = cast(ShardVenue, adapter).sequenced
        self._connection_seq = None
        if isinstance(adapter, InStreamVenue) and adapter.numbers_connections:
            self._connection_seq = adapter.connection_seq
            scan = None
        self._connections: dict[int, _Connection] = {}  # slot -> its chain (checkpointed)
        # ... and some check their books by content (Kraken's checksum): kept per connection
        # slot here, in the batch part, never on the per-frame path (not checkpointed: a
        # connection's books start again with its snapshots).
        self._depth_of: Callable[[str], int] | None = None
        self._checked: Callable[[str], bool] | None = None
        if isinstance(adapter, InStreamVenue):
            self._depth_of = adapter.checked_books()
            self._checked = adapter.checked_channel if self._depth_of is not None else None
        self._books_by_slot: dict[int, KrakenBooks] = {}
        # ... and read some pushes by what was asked (Kraken's book depth): journaled commands
        # tell the adapter, so a reader that never sent them derives as the recorder did.
        self._sent = adapter.sent if isinstance(adapter, InStreamVenue) else None
        self._scan = scan
        self._snapshots: list[SnapshotRow] = []
        self._tracker = SequenceTracker()
        self._messages: list[MessageRow] = []
        # Latest data frame of each book stream: parsed into a BookRow only at cut time.
        self._books: dict[StreamKey, tuple[bytes, int, int]] = {}
        self._streams: dict[str, dict[str, StreamCounts]] = {}  # channel -> symbol -> counts
        self._fast: dict[bytes, _Fast] = {}  # scan key -> stream in its steady state
        self._fast_by_stream: dict[StreamKey, bytes] = {}  # ... and back
        self._last_message: tuple[StreamCounts, bool] | None = None  # sequenced: (stream, book)
        self._pending: list[_Fast] = []  # fast streams with counts not yet in the tracker
        self._actions = Actions()
        self.gap_tally = GapTally()
        self._last_lsn = 0
        self._cut_lsn = 0
        self._subscriptions: dict[str, list[str]] | None = None
        self.messages = 0
        self.malformed = 0
        self.rejected = 0
        self.reconnects = 0
        self.venue_resets = 0
        self.oversized = 0  # frames over the size limit skipped (GAP "oversized" markers)
        self.snapshots = 0  # venue snapshots applied, REST or in the feed (this process)
        self._connected_since_start = False

    # -- state from a checkpoint ---------------------------------------------------------------
    def restore(
        self, tracker_state: dict[str, Any] | None, counters: dict[str, int], applied_lsn: int
    ) -> None:
        """Start from the state SQLite holds as of ``applied_lsn``."""
        if tracker_state is not None:
            self._tracker = SequenceTracker.from_checkpoint(tracker_state)
            try:
                self._connections = {
                    int(slot): _Connection.from_doc(doc)
                    for slot, doc in tracker_state.get(_SLOTS, {}).items()
                }
            except (KeyError, TypeError, ValueError) as exc:
                raise StoreError(
                    f"connection checkpoint damaged: {exc!r}",
                    hint="rebuild the store from the journal",
                ) from None
        self._fast = {}
        self._fast_by_stream = {}
        self.malformed = counters.get("malformed", 0)
        self.rejected = counters.get("rejected", 0)
        self.reconnects = counters.get("reconnects", 0)
        self.venue_resets = counters.get("venue_resets", 0)
        self.oversized = counters.get("oversized", 0)
        self._last_lsn = self._cut_lsn = applied_lsn
        self.gap_tally = GapTally(self._tracker.gaps())

    @property
    def derived_lsn(self) -> int:
        """The last LSN fed."""
        return self._last_lsn

    def take_actions(self) -> Actions:
        """What the records fed since the last call ask of the shell; starts a new set."""
        self._settle()
        actions, self._actions = self._actions, Actions()
        return actions

    # -- records in ----------------------------------------------------------------------------
    def feed_records(self, records: Iterable[Record]) -> None:
        """Derive a run of journal records in LSN order (the batch path). Never raises on bad
        input; what the shell must do is in ``take_actions``."""
        scan = self._scan
        fast_streams = self._fast
        rows = self._messages
        inbound = RecordKind.INBOUND
        lsn = self._last_lsn
        for record in records:
            lsn = record.lsn
            payload = record.payload
            found = None
            if scan is not None and record.kind == inbound and not record.flags:
                found = scan(payload)
                if found is not None:
                    fast = fast_streams.get(found[0])
                    seq = found[1]
                    if fast is not None and seq == fast.next:
                        # The steady state: the tracker's hot path, counted and told in bulk.
                        if not fast.count:
                            self._pending.append(fast)
                        fast.next = seq + 1
                        fast.count += 1
                        fast.recv_ns = recv_ns = record.recv_ns
                        counts = fast.counts
                        counts.frames += 1
                        counts.bytes += len(payload)
                        rows.append(_row((*fast.prefix, seq, recv_ns, lsn, payload, False)))
                        if fast.book:
                            self._books[counts.key] = (payload, recv_ns, counts.epoch)
                        continue
            self.feed(lsn, record.kind, record.recv_ns, payload, record.flags, record.stream)
            if found is not None:
                self._take_fast(found[0])
        self._last_lsn = lsn

    def feed(
        self, lsn: int, kind: int, recv_ns: int, payload: bytes, flags: int = 0, slot: int = 0
    ) -> None:
        """Derive whatever one journal record means through the adapter and the tracker
        (``slot``: the connection slot of the record header).

        Never raises on bad input; what the shell must do is in ``take_actions``.
        """
        self._settle()
        self._last_lsn = lsn
        self._last_message = None
        if kind == RecordKind.INBOUND:
            if flags & FLAG_SHADOW:
                return  # the other connection's copy of this frame is the one derived
            if self._inbound(lsn, recv_ns, payload, bool(flags & FLAG_BINARY), slot):
                return
        elif kind == RecordKind.OUTBOUND:
            self._outbound(payload)
        elif kind == RecordKind.CONNECTION:
            self._connection_event(recv_ns, payload, slot)
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
        # Anything but a data frame, a pong or a malformed frame may change any stream's
        # sequence state (acks, resume requests, connection events): no stream stays steady.
        self._fast.clear()
        self._fast_by_stream.clear()

    def _settle(self) -> None:
        """Tell the tracker the in-order seqs counted on the steady path."""
        if not self._pending:
            return
        tracker = self._tracker
        for fast in self._pending:
            tracker.advance(fast.counts.key, fast.next - 1, fast.count, fast.recv_ns)
            self.messages += fast.count
            fast.count = 0
        self._pending = []

    def _take_fast(self, scan_key: bytes) -> None:
        """After the slow path derived a scanned frame: is its stream steady now?"""
        if self._last_message is None:
            return
        counts, book = self._last_message
        next_seq = self._tracker.fast_next(counts.key)
        if next_seq is not None and scan_key not in self._fast:
            self._fast[scan_key] = _Fast(self.venue, counts, next_seq, book)
            self._fast_by_stream[counts.key] = scan_key

    def _inbound(self, lsn: int, recv_ns: int, payload: bytes, binary: bool, slot: int) -> bool:
        """Derive one frame; True when it cannot have changed another stream's state."""
        event = self._adapter.parse(payload, recv_ns, binary=binary)
        if self._connection_seq is not None:
            number = self._connection_seq()
            if number is not None and not self._connection_number(slot, number, recv_ns):
                return False  # a frame of the connection seen already: the journal keeps it
        if type(event) is Message:
            # One key object per stream, found by two str-keyed lookups (str hashes are cached).
            by_symbol = self._streams.get(event.channel)
            counts = by_symbol.get(event.symbol) if by_symbol is not None else None
            if counts is None:
                counts = self._new_counts(StreamKey(event.channel, event.symbol))
            counts.frames += 1
            counts.bytes += len(payload)
            key = counts.key
            scan_key = self._fast_by_stream.pop(key, None)
            if scan_key is not None:
                del self._fast[scan_key]  # the tracker decides this one: no longer steady
            step = Step.UPDATE
            if event.seq is not None and self._step is not None and self._connection_seq is None:
                step = self._step(event)
                if step is Step.SNAPSHOT or step is Step.KEEPALIVE:
                    self._in_feed_state(lsn, recv_ns, payload, key, event.seq, step)
                    return True
            if self._connection_seq is not None and event.seq is not None:
                self._connection_message(recv_ns, slot, event, counts)
            elif step is Step.RESET:
                assert event.seq is not None
                epoch = self._tracker.renumber(key, event.seq, recv_ns)
                if epoch is not None:
                    why = f"{REASON_VENUE_RESET}: the venue numbers it anew from {event.seq}"
                    self._venue_reset(lsn, key, epoch, why)
            elif event.seq is not None:
                if event.first_seq is None:
                    obs = self._tracker.observe(key, event.seq, recv_ns)
                else:
                    obs = self._tracker.observe_range(key, event.first_seq, event.seq, recv_ns)
                if obs.duplicate:
                    return True
                if obs.reset is not None:
                    self._venue_reset(lsn, key, obs.reset.epoch, obs.reset.reason)
                if obs.resync_from is not None:
                    self._actions.gapped.add(key)
            elif self._checked is not None and self._checked(key.channel):
                self._check_book(slot, key, recv_ns, payload, event)
                self._tracker.observe_unsequenced(key, recv_ns, checked=True)
            else:
                self._tracker.observe_unsequenced(key, recv_ns)
            self.messages += 1
            self._messages.append(
                MessageRow(
                    self.venue,
                    key.channel,
                    key.symbol,
                    counts.epoch,
                    event.seq,
                    recv_ns,
                    lsn,
                    payload,
                    binary,
                )
            )
            book = key.channel in self._book_channels
            if book:
                # Only the latest book per stream is snapshotted; parsed again at cut time.
                self._books[key] = (payload, recv_ns, counts.epoch)
            if event.seq is not None:
                self._last_message = (counts, book)
            return True
        if type(event) is Pong:
            return True
        if type(event) is Subscribed:
            if event.streams and event.channel is not None:
                for symbol, rng in event.streams.items():
                    key = StreamKey(event.channel, symbol)
                    for gap in self._tracker.on_ack(key, rng.first_seq, rng.head_seq, recv_ns):
                        if gap.reason.startswith(REASON_VENUE_RESET):
                            self._venue_reset(lsn, key, gap.epoch, gap.reason)
            return False
        if type(event) is Malformed:
            self.malformed += 1
            self._actions.malformed.append((lsn, event.reason))
            return True
        if type(event) is VenueRejected:
            self.rejected += 1
            self._actions.rejected.append(
                f"venue refused {event.cmd} (code {event.code}): {event.message}"
            )
            if event.fatal:
                self._actions.fatal = Rejection(event.code, event.message)
        return False

    def _check_book(
        self, slot: int, key: StreamKey, recv_ns: int, payload: bytes, event: Message
    ) -> None:
        """Apply a book message to its connection's copy of the book and check it: a checksum
        that disagrees (or a crossed book) means a message was lost since the last good one;
        the stream is resubscribed, and the snapshot that answers closes the gap as lost."""
        assert self._depth_of is not None
        books = self._books_by_slot.get(slot)
        if books is None:
            books = self._books_by_slot[slot] = KrakenBooks(self._depth_of)
        for result in books.apply(payload):
            if result.check is BookCheck.MISMATCH or result.check is BookCheck.CROSSED:
                why = f"{result.check}: checksum {result.expected}, book gives {result.computed}"
                self._tracker.broken(key, recv_ns, why)
                self._actions.gapped.add(key)
            elif result.check is BookCheck.OK and event.data.get("type") == "snapshot":
                self._tracker.mended(key, recv_ns, REASON_RESUBSCRIBED)

    def _connection_number(self, slot: int, number: int, recv_ns: int) -> bool:
        """Check a frame's connection-wide number; False for a duplicate. A jump may have
        hidden a push of any stream the connection carries: each gets the hole as a gap (the
        recoverable ones wait for the resubscribe's snapshot, the rest are lost now)."""
        conn = self._connections.get(slot)
        if conn is None:
            conn = self._connections[slot] = _Connection()
        chain = conn.sequence.chain
        before = chain.holes(CoinbaseSequence.KEY)
        verdicts = conn.sequence.check(number)
        if verdicts.verdict is Verdict.DUPLICATE:
            return False
        tracker = self._tracker
        for lo, hi in verdicts.opened:
            for stream in sorted(conn.streams):
                tracker.suspect(stream, lo, hi, recv_ns, REASON_CONNECTION_JUMP)
                if self._sequenced is not None and self._sequenced(stream.channel):
                    self._actions.gapped.add(stream)
                else:  # nothing re-sends it
                    tracker.resolve(stream, lo, hi, recv_ns, GapState.LOST, REASON_CONNECTION_JUMP)
        after = chain.holes(CoinbaseSequence.KEY)
        for lo, hi in before:
            if not any(lo <= a and b <= hi for a, b in after):  # every id of it came late
                for stream in conn.streams:
                    tracker.resolve(stream, lo, hi, recv_ns, GapState.FILLED, "")
        return True

    def _connection_message(
        self, recv_ns: int, slot: int, event: Message, counts: StreamCounts
    ) -> None:
        """A push numbered by its connection: a new connection numbers anew (a new epoch of
        the stream, not a loss); a snapshot closes the stream's gaps as lost. A snapshot is a
        message row here: its number is its own."""
        assert event.seq is not None
        key = counts.key
        conn = self._connections[slot]  # made by _connection_number
        # A stream nothing re-sends (no snapshot) loses what an outage hid: timed by the tracker.
        timed = self._sequenced is None or not self._sequenced(key.channel)
        if key in conn.streams:
            self._tracker.observe_loose(key, event.seq, recv_ns, timed=timed)
        else:
            conn.streams.add(key)
            epoch = self._tracker.renumber(
                key, event.seq, recv_ns, timed=timed, reason=REASON_RECONNECTED
            )
            if epoch is not None:
                counts.epoch = epoch
        if self._step is not None and self._step(event) is Step.SNAPSHOT:
            self._tracker.resolve(key, 0, INT64_MAX, recv_ns, GapState.LOST, REASON_RESUBSCRIBED)

    def _in_feed_state(
        self, lsn: int, recv_ns: int, payload: bytes, key: StreamKey, seq: int, step: Step
    ) -> None:
        """A venue's snapshot sent in the feed, or its idle keepalive (no id, no row: the
        journal keeps it; the id it says is the last one opens a gap if it is news)."""
        if step is Step.SNAPSHOT:
            # Kept like a REST snapshot (exported as one, at its id): its id may be that of the
            # last update received, so it cannot be a message row of the stream.
            self._tracker.restart(key, seq, recv_ns)
            stats = self._tracker.stream_stats(key)
            counts = self._streams[key.channel][key.symbol]
            if stats is not None and stats.epoch != counts.epoch:
                why = f"{REASON_VENUE_RESET}: the venue numbers it anew from {seq} (its snapshot)"
                self._venue_reset(lsn, key, stats.epoch, why)
            self.snapshots += 1
            self._snapshots.append(
                SnapshotRow(self.venue, key.channel, key.symbol, seq, recv_ns, lsn, "", payload)
            )
        elif self._tracker.expect(key, seq, recv_ns).resync_from is not None:
            self._actions.gapped.add(key)

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
        """The recorder gave up on a gap nothing can fill: the ids up to ``upto`` are LOST; or
        a frame over the size limit was skipped: counted, and the seq it held (if known) LOST."""
        doc = _loads(payload)
        if isinstance(doc, dict) and doc.get("event") == "oversized":
            self._oversized(recv_ns, doc)
            return
        if not isinstance(doc, dict) or doc.get("event") != "lost":
            return
        channel, symbol, upto = doc.get("channel"), doc.get("symbol"), doc.get("upto")
        reason = doc.get("reason")
        if isinstance(channel, str) and isinstance(symbol, str) and type(upto) is int:
            why = reason if isinstance(reason, str) else "lost"
            self._tracker.lose(StreamKey(channel, symbol), upto, recv_ns, why)

    def _oversized(self, recv_ns: int, doc: dict[str, Any]) -> None:
        self.oversized += 1
        channel, symbol, seq, size = (doc.get(k) for k in ("channel", "symbol", "seq", "size"))
        if isinstance(channel, str) and isinstance(symbol, str) and type(seq) is int:
            what = f"{size} bytes" if type(size) is int else "size unknown"
            reason = f"{REASON_OVERSIZED} ({what})"
            self._tracker.lose_seq(StreamKey(channel, symbol), seq, recv_ns, reason)

    def _malformed(self, lsn: int, reason: str) -> None:
        self.malformed += 1
        self._actions.malformed.append((lsn, reason))

    def _new_counts(self, key: StreamKey) -> StreamCounts:
        """The counts of a stream first seen by this process, at the tracker's epoch of it."""
        stats = self._tracker.stream_stats(key)
        counts = StreamCounts(key, stats.epoch if stats is not None else 0)
        self._streams.setdefault(key.channel, {})[key.symbol] = counts
        return counts

    def _venue_reset(self, lsn: int, key: StreamKey, epoch: int, reason: str) -> None:
        # The stream's next messages are tagged with the new epoch.
        by_symbol = self._streams.get(key.channel)
        counts = by_symbol.get(key.symbol) if by_symbol is not None else None
        if counts is None:
            counts = self._new_counts(key)
        counts.epoch = epoch
        self.venue_resets += 1
        # Rare and important (the stream's numbering started over): always reported.
        self._actions.resets.append(
            f"{key} at LSN {lsn}: {reason}; recording it as epoch {epoch} of the stream"
        )

    def _outbound(self, payload: bytes) -> None:
        if self._sent is not None:
            self._sent(payload)
            return
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

    def _connection_event(self, recv_ns: int, payload: bytes, slot: int) -> None:
        doc = _loads(payload)
        event = doc.get("event") if isinstance(doc, dict) else None
        if event in ("connected", "disconnected"):
            self._connections.pop(slot, None)  # a connection's numbering is its own
            self._books_by_slot.pop(slot, None)  # ... and its books start with snapshots
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
        self._settle()
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
        self._settle()
        return self._tracker.stream_stats(key)

    # -- snapshots -----------------------------------------------------------------------------
    def cut(self) -> Batch | None:
        """Everything derived up to the last fed LSN, as one batch (None if nothing new)."""
        self._settle()
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
                book
                for key, (frame, recv_ns, epoch) in self._books.items()
                if (book := self._book_row(key, frame, recv_ns, epoch)) is not None
            ],
            gaps=gaps,
            streams=streams,
            snapshots=self._snapshots,
            tracker_state=self._checkpoint(),
            subscriptions=self._subscriptions,
            counters={
                "malformed": self.malformed,
                "rejected": self.rejected,
                "reconnects": self.reconnects,
                "venue_resets": self.venue_resets,
                "oversized": self.oversized,
            },
        )
        self._messages = []
        self._snapshots = []
        self._books = {}
        self._cut_lsn = self._last_lsn
        return batch

    def _checkpoint(self) -> dict[str, Any]:
        """The tracker's checkpoint, with each connection's own numbering (Coinbase)."""
        state = self._tracker.to_checkpoint()
        if self._connections:
            state[_SLOTS] = {str(slot): c.to_doc() for slot, c in self._connections.items()}
        return state

    def _book_row(self, key: StreamKey, frame: bytes, recv_ns: int, epoch: int) -> BookRow | None:
        """The book snapshot of a stream's latest frame (its one JSON parse per cut)."""
        event = self._adapter.parse(frame, recv_ns)
        if type(event) is not Message:
            return None  # cannot happen: the frame was a message when it was derived
        bids, asks = event.data.get("bids", []), event.data.get("asks", [])
        return BookRow(
            self.venue, key.channel, key.symbol, event.seq, recv_ns, event.ts_ms, bids, asks, epoch
        )


def _loads(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
