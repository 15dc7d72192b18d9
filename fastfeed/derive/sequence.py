"""Per-stream sequence state and gap detection: what arrived, what is missing, what is lost.

Sans-I/O: no clock, every call carries the receive time. Each stream (channel, symbol) has one
sync state; the transitions are the table ``_TRANSITIONS``, and a (state, trigger) pair it does
not list leaves the state as it is::

    UNSYNCED  --FIRST-------> SYNCED     first seq seen (no resume asked): it is the baseline
    UNSYNCED  --UNSEQUENCED-> PLAIN      a push without seq: only time-bounded gaps possible
    UNSYNCED  --RESUME------> RESYNCING  a subscribe asked the venue to start at a seq
    UNSYNCED  --ACK_WHOLE---> SYNCED     a live subscribe's ack: the venue starts at first_seq
    SYNCED    --GAP_OPENED--> GAPPED     a seq jumped past the next expected one
    SYNCED    --RESUME------> RESYNCING
    GAPPED    --GAPS_CLOSED-> SYNCED     every open gap filled (or declared lost)
    GAPPED    --RESUME------> RESYNCING
    RESYNCING --ACK_WHOLE---> SYNCED     the venue's ack applied, nothing left open
    RESYNCING --ACK_GAPPED--> GAPPED     ack applied, open gaps wait for the replay to fill them
    PLAIN     --FIRST-------> SYNCED     the venue started numbering this stream
    SYNCED, GAPPED, RESYNCING --RESET--> SYNCED   the venue restarted: a new epoch from seq 1

Sequence rules (TickDB sequence extension): seqs start at 1 and grow by 1 per push of a stream;
a subscribe may ask to resume at a seq and the ack's ``first_seq`` says where the venue really
starts. Everything at or below ``base`` is settled (received, or declared lost); ``above`` holds
the settled seqs above it as sorted, disjoint, non-adjacent intervals, so memory is bounded by
the number of holes, not of messages. Every unsettled seq between ``base`` and the highest seq
seen lies in exactly one OPEN gap. A gap keeps the range it opened with until it is filled or,
on a venue ack, split into the parts that are lost and the parts still expected.

A venue restart numbers its streams from 1 again (a new *epoch*). It shows as a push far below
the previous push of its stream (more than ``reset_backwards`` seqs: duplicates and reorders
step back a few at most, and a replay only starts after an ack, which restarts the count), or
as an ack whose ``first_seq`` is below the seq we asked to resume at (the venue is behind us).
Either way the old epoch's open gaps become LOST (the venue no longer has that history), a
LOST time gap marks the break, and the stream starts over at base 0, so seqs of the new
epoch are news, not duplicates, and any it has missed are a gap to backfill.

Each stream counts its epochs: 0 for the first run of seqs, +1 at each venue reset. A seq
names a message only together with its epoch (the store keys messages by both), and every gap
carries the epoch its seqs belong to. The count is in the checkpoint, and replaying the journal
takes the same resets in the same order, so live recording and recovery number epochs alike.

Venues that number updates rather than pushes (Binance diff depth: a push covers update ids
``U..u``; OKX and Bybit state the previous push's id) report each push as the range it covers,
``observe_range(key, first, last)``: the same settled/open bookkeeping over ranges, a gap being
the ids between the highest settled one and ``first``. Such venues cannot replay: they resync
by recording a full snapshot of the stream at an id, ``snapshot(key, seq)``, which declares
the still-missing ids at or below it LOST (the snapshot stands in for them).

Without seqs (plain TickDB) a disconnect or stall opens a LOST gap bounded in time: from the
stream's last message to its first message after the connection is back.

Venues that send their snapshot in the feed (OKX, Bybit, Coinbase, Kraken) restart a stream's
chain at the snapshot's id (``restart``: missing ids up to it are LOST only if a gap was open)
and may number a stream anew in a message that continues it (``renumber``: a new epoch, no
loss). Coinbase numbers a connection's messages, not a stream's: its streams only count their
seqs (``observe_loose``) and get the connection's holes as gaps (``suspect``, ``resolve``).
Kraken has no ids: a book whose checksum fails is ``broken`` (an OPEN gap bounded in time)
until the snapshot that ``mended`` it.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any

from fastfeed import defaults
from fastfeed.derive.streams import Gap, GapState, StreamKey
from fastfeed.errors import StoreError

__all__ = [
    "CHECKPOINT_FORMAT",
    "REASON_CONNECTION_JUMP",
    "REASON_RECONNECTED",
    "REASON_RESUBSCRIBED",
    "Observation",
    "Outcome",
    "SequenceTracker",
    "StreamStats",
    "SyncState",
]

CHECKPOINT_FORMAT = 2  # 2: streams and gaps carry their epoch
REASON_JUMP = "seq jump"
REASON_HISTORY_GONE = "venue history gone"
REASON_VENUE_RESET = "venue reset"
REASON_RECONNECTED = "reconnected: the new connection numbers its messages anew"
REASON_DISCONNECTED = "disconnected (no sequence numbers)"
REASON_STALLED = "stalled (no sequence numbers)"
REASON_SNAPSHOT = "not replayable: replaced by a snapshot"
REASON_RESUBSCRIBED = "not replayable: replaced by the snapshot of a resubscribe"
REASON_CONNECTION_JUMP = "connection seq jump: may have held this stream's pushes"
REASON_OVERSIZED = "frame over the size limit"


class SyncState(enum.StrEnum):
    """Where a stream stands with its sequence numbers."""

    UNSYNCED = "unsynced"
    SYNCED = "synced"
    GAPPED = "gapped"
    RESYNCING = "resyncing"
    PLAIN = "plain"


class _Trigger(enum.Enum):
    FIRST = enum.auto()
    UNSEQUENCED = enum.auto()
    RESUME = enum.auto()
    GAP_OPENED = enum.auto()
    GAPS_CLOSED = enum.auto()
    ACK_WHOLE = enum.auto()
    ACK_GAPPED = enum.auto()
    RESET = enum.auto()


_S, _T = SyncState, _Trigger
_TRANSITIONS: dict[tuple[SyncState, _Trigger], SyncState] = {
    (_S.UNSYNCED, _T.FIRST): _S.SYNCED,
    (_S.UNSYNCED, _T.UNSEQUENCED): _S.PLAIN,
    (_S.UNSYNCED, _T.RESUME): _S.RESYNCING,
    (_S.UNSYNCED, _T.ACK_WHOLE): _S.SYNCED,
    (_S.SYNCED, _T.GAP_OPENED): _S.GAPPED,
    (_S.SYNCED, _T.RESUME): _S.RESYNCING,
    (_S.GAPPED, _T.GAPS_CLOSED): _S.SYNCED,
    (_S.GAPPED, _T.RESUME): _S.RESYNCING,
    (_S.RESYNCING, _T.ACK_WHOLE): _S.SYNCED,
    (_S.RESYNCING, _T.ACK_GAPPED): _S.GAPPED,
    (_S.PLAIN, _T.FIRST): _S.SYNCED,
    (_S.SYNCED, _T.RESET): _S.SYNCED,
    (_S.GAPPED, _T.RESET): _S.SYNCED,
    (_S.RESYNCING, _T.RESET): _S.SYNCED,
}


class Outcome(enum.StrEnum):
    """Whether an observed seq was news or had been received already."""

    NEW = "new"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Observation:
    """What one seq did: new or duplicate, gaps it opened or filled, where to resume from."""

    outcome: Outcome
    opened: tuple[Gap, ...] = ()
    filled: tuple[Gap, ...] = ()
    resync_from: int | None = None  # set when a gap opened: re-subscribe from this seq
    reset: Gap | None = None  # set when this seq showed a venue restart: the LOST break marker

    @property
    def duplicate(self) -> bool:
        """True when the seq had been received before (drop it from derived data)."""
        return self.outcome is Outcome.DUPLICATE


_IN_ORDER = Observation(Outcome.NEW)
_DUPLICATE = Observation(Outcome.DUPLICATE)


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one stream, as the store's stream checkpoint and ``status`` show them."""

    state: SyncState
    records: int
    duplicates: int
    first_seq: int | None
    last_seq: int | None  # the highest seq received
    last_recv_ns: int | None
    head_seq: int | None  # the venue's last published seq, from its latest ack
    open_gaps: int
    epoch: int = 0  # venue restarts seen: first_seq and last_seq are of this epoch


_lo = itemgetter(0)
_hi = itemgetter(1)


class _Stream:
    """The mutable state of one stream (see the module docstring for the invariants)."""

    __slots__ = (
        "above",
        "base",
        "broken",
        "duplicates",
        "epoch",
        "first_seq",
        "head_seq",
        "key",
        "last_push",
        "last_recv_ns",
        "last_seq",
        "open",
        "records",
        "reported",
        "requested",
        "state",
        "time_gap",
        "timed",
    )

    def __init__(self, key: StreamKey) -> None:
        self.key = key
        self.state = SyncState.UNSYNCED
        self.epoch = 0  # venue restarts seen (module docstring)
        self.base = -1  # every seq <= base is settled; -1: no baseline yet (seqs start at 1)
        self.above: list[tuple[int, int]] = []
        self.open: list[Gap] = []  # OPEN gaps, by from_seq
        self.requested: int | None = None  # resume seq asked for, until the venue acks it
        self.records = 0
        self.duplicates = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.last_push: int | None = None  # seq of the previous push (an ack restarts it)
        self.last_recv_ns: int | None = None
        self.head_seq: int | None = None
        self.time_gap: int | None = None  # plain mode: LOST gap waiting for its closing message
        self.broken: int | None = None  # checked by content: OPEN gap waiting for a snapshot
        self.timed = False  # seqs of a shared sequence nothing re-sends: outages as plain mode
        self.reported: list[Any] | None = None  # stats as last handed out by changed_stats


class SequenceTracker:
    """Sequence state of every stream: detects, shrinks and resolves gaps; checkpointable."""

    def __init__(self, *, reset_backwards: int = defaults.SEQ_RESET_BACKWARDS) -> None:
        self._reset_backwards = reset_backwards
        self._streams: dict[StreamKey, _Stream] = {}
        self._gaps: dict[int, Gap] = {}  # unresolved gaps, and resolved ones not yet handed out
        self._dirty: dict[int, None] = {}  # gap ids changed since changed_gaps (ordered set)
        self._next_gap_id = 1

    # -- sequenced streams ---------------------------------------------------------------------
    def observe(self, key: StreamKey, seq: int, recv_ns: int) -> Observation:
        """Account for one push with sequence number ``seq`` (>= 1) received at ``recv_ns``."""
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(key)
        # The hot path: the next seq of a stream with no holes.
        if seq == st.base + 1 and not st.above and st.first_seq is not None:
            st.base = st.last_seq = st.last_push = seq
            st.last_recv_ns = recv_ns
            st.records += 1
            return _IN_ORDER
        last_push = st.last_push
        if last_push is not None and seq + self._reset_backwards < last_push:
            marker = self._reset(st, f"seq {last_push} then {seq}", recv_ns)
            obs = self.observe(st.key, seq, recv_ns)
            return replace(obs, reset=marker)
        st.last_push = seq
        st.last_recv_ns = recv_ns
        return self._observe_slow(st, seq, seq, recv_ns)

    def observe_range(self, key: StreamKey, first: int, last: int, recv_ns: int) -> Observation:
        """Account for one push covering update ids ``first..last`` (``first <= last``).

        No venue-reset detection here: such ids are shared by many streams (Binance futures'
        ``u`` grows by thousands between two pushes of one symbol), so a reorder can step
        back further than any fixed bound.
        """
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(key)
        if first == st.base + 1 and not st.above and st.first_seq is not None:
            st.base = st.last_seq = st.last_push = last
            st.last_recv_ns = recv_ns
            st.records += 1
            return _IN_ORDER
        st.last_push = last
        st.last_recv_ns = recv_ns
        return self._observe_slow(st, first, last, recv_ns)

    def fast_next(self, key: StreamKey) -> int | None:
        """The seq ``observe`` would take on its hot path for this stream now, or None.

        While it holds, ``count`` such seqs in a row change nothing but what ``advance``
        sets, so a batch deriver may count them and call ``advance`` once.
        """
        st = self._streams.get(key)
        if st is None or st.above or st.first_seq is None:
            return None
        return st.base + 1

    def advance(self, key: StreamKey, last: int, count: int, recv_ns: int) -> None:
        """Account for ``count`` in-order seqs ending at ``last``, the hot path of ``observe``.

        Only valid right after ``fast_next(key)`` answered ``last - count + 1`` (and nothing
        else touched the stream since): exactly what ``count`` calls of ``observe`` would do.
        """
        st = self._streams[key]
        st.base = st.last_seq = st.last_push = last
        st.last_recv_ns = recv_ns
        st.records += count

    def _reset(self, st: _Stream, what: str, recv_ns: int) -> Gap:
        """The venue restarted the stream: close out the old epoch, start over at base 0."""
        for gap in st.open:
            # The venue's new epoch cannot replay the old one's history.
            self._put(replace(gap, to_ns=recv_ns, state=GapState.LOST, reason=REASON_VENUE_RESET))
        # What the venue published between our last message and the restart is unknown: a
        # LOST gap bounded in time, like a plain stream's outage.
        since = st.last_recv_ns if st.last_recv_ns is not None else recv_ns
        reason = f"{REASON_VENUE_RESET}: {what}"
        st.epoch += 1  # the marker is the new epoch's: what it missed before its first seq
        marker = self._new_gap(st, None, None, since, recv_ns, GapState.LOST, reason)
        st.base = 0
        st.above = []
        st.open = []
        st.requested = None
        st.last_seq = st.last_push = None
        _advance(st, _T.RESET)
        return marker

    def _observe_slow(self, st: _Stream, first: int, last: int, recv_ns: int) -> Observation:
        if st.base < 0:
            # The baseline: everything up to the first push's last id counts as settled.
            st.base = st.first_seq = st.last_seq = last
            st.records += 1
            _advance(st, _T.FIRST)
            return _IN_ORDER
        if _covered(st, max(first, st.base + 1), last):
            st.duplicates += 1
            return _DUPLICATE
        st.records += 1
        if st.first_seq is None or last < st.first_seq:
            st.first_seq = last
        if st.last_seq is None or last > st.last_seq:
            st.last_seq = last
        top = _top(st)
        _add_range(st, first, last)
        if first > top + 1:
            gap = self._new_gap(st, top + 1, first - 1, recv_ns, None, GapState.OPEN, REASON_JUMP)
            st.open.append(gap)  # above every other gap: the list stays sorted
            _advance(st, _T.GAP_OPENED)
            return Observation(Outcome.NEW, opened=(gap,), resync_from=st.base + 1)
        if first <= top:
            filled: list[Gap] = []
            for gap in list(st.open):
                g_lo, g_hi = _bounds(gap)
                if g_lo <= last and first <= g_hi and _covered(st, g_lo, g_hi):
                    done = replace(gap, to_ns=recv_ns, state=GapState.FILLED)
                    self._put(done)
                    st.open.remove(gap)
                    filled.append(done)
            if filled:
                if not st.open:
                    _advance(st, _T.GAPS_CLOSED)
                return Observation(Outcome.NEW, filled=tuple(filled))
        return _IN_ORDER

    def resume_requested(self, key: StreamKey, seq: int) -> None:
        """A subscribe asked the venue to start this stream at ``seq`` (from the journal)."""
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(key)
        if st.first_seq is None:
            # No seq received yet: whatever precedes the asked point is not ours to miss.
            st.base = seq - 1
        st.requested = seq
        _advance(st, _T.RESUME)

    def on_ack(
        self, key: StreamKey, first_seq: int, head_seq: int, recv_ns: int
    ) -> tuple[Gap, ...]:
        """Apply the venue's subscribe ack; returns the gaps it declared LOST.

        The venue sends from ``first_seq``; if that is above the seq we asked to resume at,
        the history in between is gone for good (sequence extension: the ack's ``first_seq``).
        If it is below, the venue restarted: the return is the venue-reset marker (see the
        module docstring).
        """
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(key)
        st.head_seq = head_seq
        st.last_push = None  # the venue's cursor restarts at first_seq
        requested, st.requested = st.requested, None
        if requested is None:
            if st.first_seq is None and st.base < 0:
                # A live subscribe of a stream never received: the venue sends from first_seq,
                # so that is the baseline, not whatever push comes first. A reordered first
                # pair (first_seq + 1 before first_seq) then opens a gap the late one fills,
                # instead of the late one being dropped as below the baseline.
                st.base = first_seq - 1
                _advance(st, _T.ACK_WHOLE)
            return ()
        if first_seq < requested and st.first_seq is not None:
            # The venue is behind what we saw (sequence extension: it answers a resume past
            # head_seq + 1 with head_seq + 1): it restarted. Its new epoch from 1 to head_seq
            # is a gap the next push opens and a resume from 1 backfills.
            return (self._reset(st, f"asked to resume at {requested}, acked {first_seq}", recv_ns),)
        lost: tuple[Gap, ...] = ()
        if first_seq > requested:
            # A resume asked past everything seen skipped the seqs in between: the venue will
            # not send them either, so they are lost with the rest.
            top = _top(st)
            lost = self._mark_lost(st, min(requested, top + 1), first_seq - 1, recv_ns)
        _advance(st, _T.ACK_GAPPED if st.open else _T.ACK_WHOLE)
        return lost

    def expect(self, key: StreamKey, last: int, recv_ns: int) -> Observation:
        """The venue says the stream's last id is ``last`` without covering any id itself (OKX's
        idle keepalive): ids past everything known up to it are missing, an OPEN gap."""
        st = self._streams.get(key)
        if st is None or st.base < 0:
            return _IN_ORDER  # no baseline: the snapshot to come is the start
        top = _top(st)
        if last <= top:
            return _IN_ORDER
        gap = self._new_gap(st, top + 1, last, recv_ns, None, GapState.OPEN, REASON_JUMP)
        st.open.append(gap)  # above every other gap: the list stays sorted
        _advance(st, _T.GAP_OPENED)
        return Observation(Outcome.NEW, opened=(gap,), resync_from=st.base + 1)

    def snapshot(self, key: StreamKey, seq: int, recv_ns: int) -> tuple[Gap, ...]:
        """A full state of the stream as of ``seq`` was recorded; returns the gaps made LOST.

        Missing ids at or below ``seq`` can no longer come (the venue does not replay) and no
        longer matter for the book: they become LOST. Ids above the highest received are
        left alone: those pushes are still on their way.
        """
        return self.lose(key, seq, recv_ns, REASON_SNAPSHOT)

    def restart(self, key: StreamKey, seq: int, recv_ns: int) -> tuple[Gap, ...]:
        """The venue sent the stream's full state as of ``seq`` in the feed (the snapshot a
        subscribe or a resubscribe brings); returns the gaps made LOST.

        The chain restarts at ``seq``: every id at or below it is settled. With a gap open,
        the missing ids up to ``seq`` are LOST (the snapshot replaced them, nothing replays
        them); with none open, the ids between the last received and ``seq`` were simply not
        sent to us (a planned reconnect) and nothing is lost. A ``seq`` below the settled ones
        means the venue numbers the stream anew (OKX after maintenance, Bybit after a restart,
        seen at the next connection's snapshot): a new epoch, as ``renumber`` makes.
        """
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(key)
        # Not a record of the stream's messages (a snapshot is kept apart): counters stay.
        st.last_push = seq
        if st.base < 0:
            st.base = seq
            _advance(st, _T.FIRST)
            return ()
        if seq < st.base:
            lost = self._new_epoch(st, seq, recv_ns)
            st.first_seq = st.last_seq = None  # of the new epoch: none received yet
            return lost
        lost = (
            self._mark_lost(st, st.base + 1, seq, recv_ns, REASON_RESUBSCRIBED) if st.open else ()
        )
        _add_range(st, st.base + 1, seq)
        if not st.open:
            _advance(st, _T.GAPS_CLOSED)
        return lost

    def renumber(
        self,
        key: StreamKey,
        seq: int,
        recv_ns: int,
        *,
        timed: bool = False,
        reason: str = REASON_VENUE_RESET,
    ) -> int | None:
        """The venue restarted the stream's numbering at ``seq`` in a message that continues it
        (OKX ``seqId < prevSeqId``, Bybit ``u = 1``): not a loss, but a new epoch, since the
        new numbers name other messages than the old ones. Gaps still open in the old
        numbering can never fill and become LOST. Returns the new epoch (None for a stream
        with no baseline yet: this is its baseline). ``timed``: as for ``observe_loose``;
        ``reason``: why the open gaps were lost.
        """
        st = self._counted(key, recv_ns, timed)
        if st.base < 0:
            st.base = st.first_seq = st.last_seq = st.last_push = seq
            _advance(st, _T.FIRST)
            return None
        self._new_epoch(st, seq, recv_ns, reason)
        st.first_seq = st.last_seq = seq
        return st.epoch

    def _counted(self, key: StreamKey, recv_ns: int, timed: bool) -> _Stream:
        """``key``'s state with one more record at ``recv_ns``; a time gap it had ends here."""
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(key)
        st.records += 1
        st.last_recv_ns = recv_ns
        st.timed = timed
        self._end_time_gap(st, recv_ns)
        return st

    def _new_epoch(
        self, st: _Stream, seq: int, recv_ns: int, reason: str = REASON_VENUE_RESET
    ) -> tuple[Gap, ...]:
        """The stream's numbering restarts at ``seq`` (settled): its open gaps can never fill
        and become LOST (returned)."""
        lost = tuple(
            replace(gap, to_ns=recv_ns, state=GapState.LOST, reason=reason) for gap in st.open
        )
        for gap in lost:
            self._put(gap)
        st.epoch += 1
        st.base = st.last_push = seq
        st.above = []
        st.open = []
        st.requested = None
        _advance(st, _T.RESET)
        return lost

    # -- streams numbered in a sequence they share (Coinbase: one per connection) --------------
    def observe_loose(self, key: StreamKey, seq: int, recv_ns: int, *, timed: bool = False) -> None:
        """Account for a push numbered in a sequence the stream shares with others (Coinbase's
        connection-wide ``sequence_num``): counted and kept as the highest seq, but continuity
        is the shared sequence's business (``suspect`` and ``resolve``). ``timed``: nothing
        re-sends the stream after an outage (no snapshot), so a disconnect opens a LOST time
        gap, as for a plain stream."""
        st = self._counted(key, recv_ns, timed)
        if st.first_seq is None:
            st.first_seq = seq
        if st.last_seq is None or seq > st.last_seq:
            st.last_seq = seq
        if st.state is SyncState.UNSYNCED:
            _advance(st, _T.FIRST)

    def suspect(self, key: StreamKey, lo: int, hi: int, recv_ns: int, reason: str) -> Gap:
        """Ids ``lo..hi`` of the shared sequence went missing and may have held pushes of this
        stream: an OPEN gap until ``resolve`` closes it (a late arrival or a snapshot)."""
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(key)
        gap = self._new_gap(st, lo, hi, recv_ns, None, GapState.OPEN, reason)
        st.open.append(gap)
        _advance(st, _T.GAP_OPENED)
        return gap

    def resolve(
        self, key: StreamKey, lo: int, hi: int, recv_ns: int, state: GapState, reason: str
    ) -> tuple[Gap, ...]:
        """Close the stream's OPEN gaps lying within ``lo..hi`` as ``state`` (FILLED: the
        missing ids all came late; LOST: a snapshot replaced them); returns them."""
        st = self._streams.get(key)
        if st is None:
            return ()
        done = []
        for gap in list(st.open):
            g_lo, g_hi = _bounds(gap)
            if lo <= g_lo and g_hi <= hi:
                why = reason if state is GapState.LOST else gap.reason
                closed = replace(gap, to_ns=recv_ns, state=state, reason=why)
                self._put(closed)
                st.open.remove(gap)
                done.append(closed)
        if done and not st.open:
            _advance(st, _T.GAPS_CLOSED)
        return tuple(done)

    # -- streams checked by content (Kraken's book checksum) -----------------------------------
    def broken(self, key: StreamKey, recv_ns: int, reason: str) -> Gap | None:
        """The stream's content shows a message was lost (a checksum that disagrees): an OPEN
        gap bounded in time from its last good message, until ``mended``. None when one is
        open already (the messages since cannot be checked)."""
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(key)
        if st.broken is not None:
            return None
        since = st.last_recv_ns if st.last_recv_ns is not None else recv_ns
        gap = self._new_gap(st, None, None, since, None, GapState.OPEN, reason)
        st.broken = gap.gap_id
        return gap

    def mended(self, key: StreamKey, recv_ns: int, reason: str) -> Gap | None:
        """A snapshot made the stream whole again: its broken gap, if any, is LOST up to here."""
        st = self._streams.get(key)
        if st is None or st.broken is None:
            return None
        gap = replace(self._gaps[st.broken], to_ns=recv_ns, state=GapState.LOST, reason=reason)
        self._put(gap)
        st.broken = None
        return gap

    def lose(self, key: StreamKey, upto: int, recv_ns: int, reason: str) -> tuple[Gap, ...]:
        """Declare every missing id at or below ``upto`` (and the highest received) LOST."""
        st = self._streams.get(key)
        if st is None or st.base < 0:
            return ()  # nothing received yet: the first push will be the baseline
        top = _top(st)
        lost = self._mark_lost(st, st.base + 1, min(upto, top), recv_ns, reason)
        if not st.open:
            _advance(st, _T.GAPS_CLOSED)
        return lost

    def lose_seq(self, key: StreamKey, seq: int, recv_ns: int, reason: str) -> tuple[Gap, ...]:
        """Declare one seq not received LOST (a frame the recorder could not take: over the
        size limit); returns the gaps made LOST. The next resume asks past it."""
        st = self._streams.get(key)
        if st is None or st.base < 0:
            return ()  # no baseline: a live subscribe starts past it anyway
        lost = self._mark_lost(st, seq, seq, recv_ns, reason)
        if not st.open:
            _advance(st, _T.GAPS_CLOSED)
        return lost

    def _mark_lost(
        self, st: _Stream, lo: int, hi: int, recv_ns: int, reason: str = REASON_HISTORY_GONE
    ) -> tuple[Gap, ...]:
        lo = max(lo, st.base + 1)
        if lo > hi:
            return ()
        top = _top(st)
        lost: list[Gap] = []
        still_open: list[Gap] = []
        for gap in st.open:
            g_lo, g_hi = _bounds(gap)
            if g_hi < lo or g_lo > hi:
                still_open.append(gap)
                continue
            # Split the gap: the part below the lost range and the part above it stay expected
            # (or are filled already); the missing seqs inside it become LOST pieces. The first
            # piece keeps the gap's id so the ledger updates that row in place.
            pieces: list[tuple[int, int, GapState]] = []
            if g_lo < lo:
                pieces.append((g_lo, lo - 1, GapState.OPEN))
            pieces += [(a, b, GapState.LOST) for a, b in _missing(st, max(g_lo, lo), min(g_hi, hi))]
            if g_hi > hi:
                pieces.append((hi + 1, g_hi, GapState.OPEN))
            for n, (a, b, state) in enumerate(pieces):
                if state is GapState.OPEN and _covered(st, a, b):
                    state = GapState.FILLED
                gap_id = gap.gap_id if n == 0 else self._take_id()
                why = reason if state is GapState.LOST else gap.reason
                to_ns = None if state is GapState.OPEN else recv_ns
                piece = Gap(gap_id, st.key, a, b, gap.from_ns, to_ns, state, why, st.epoch)
                self._put(piece)
                if state is GapState.OPEN:
                    still_open.append(piece)
                elif state is GapState.LOST:
                    lost.append(piece)
        if hi > top:
            # Seqs past anything we saw: never in a gap yet, lost outright.
            start = max(lo, top + 1)
            lost.append(self._new_gap(st, start, hi, recv_ns, recv_ns, GapState.LOST, reason))
        _add_range(st, lo, hi)
        st.open = sorted(still_open, key=_from_seq)
        return tuple(lost)

    def resume_point(self, key: StreamKey) -> int | None:
        """The next seq to ask the venue for (None: no seqs seen, subscribe live)."""
        st = self._streams.get(key)
        if st is None or st.base < 0:
            return None
        return st.base + 1

    # -- plain streams (no sequence numbers) ---------------------------------------------------
    def observe_unsequenced(self, key: StreamKey, recv_ns: int, *, checked: bool = False) -> None:
        """Account for one push without a seq; it closes the stream's pending time gap.

        ``checked``: the stream is checked by content (Kraken's book checksum) and comes back
        whole with a snapshot after any reconnect: SYNCED rather than PLAIN, so no time gap
        opens at a disconnect (only ``broken`` opens one).
        """
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(key)
        st.records += 1
        st.last_recv_ns = recv_ns
        if st.state is SyncState.UNSYNCED:
            _advance(st, _T.FIRST if checked else _T.UNSEQUENCED)
        self._end_time_gap(st, recv_ns)

    def _end_time_gap(self, st: _Stream, recv_ns: int) -> None:
        """The stream's first message after an outage bounds its pending time gap."""
        if st.time_gap is not None:
            self._put(replace(self._gaps[st.time_gap], to_ns=recv_ns))
            st.time_gap = None

    def connection_lost(self, recv_ns: int) -> None:
        """The connection dropped: plain and timed streams start a LOST time gap (seq streams
        resume, books come back with a snapshot)."""
        self._hole(recv_ns, REASON_DISCONNECTED)

    def stalled(self, recv_ns: int) -> None:
        """The feed went silent past the stall timeout: like a disconnect for plain streams."""
        self._hole(recv_ns, REASON_STALLED)

    def _hole(self, recv_ns: int, reason: str) -> None:
        for st in self._streams.values():
            if st.state is not SyncState.PLAIN and not st.timed:
                continue
            if st.time_gap is not None:
                gap = self._gaps[st.time_gap]
                if gap.to_ns is not None:  # down again before any message: the hole goes on
                    self._put(replace(gap, to_ns=None))
                continue
            start = st.last_recv_ns if st.last_recv_ns is not None else recv_ns
            gap = self._new_gap(st, None, None, start, None, GapState.LOST, reason)
            st.time_gap = gap.gap_id

    def connection_restored(self, recv_ns: int) -> None:
        """Connected again: bound pending time gaps here until each stream's next message."""
        for st in self._streams.values():
            if st.time_gap is not None:
                gap = self._gaps[st.time_gap]
                if gap.to_ns is None:
                    self._put(replace(gap, to_ns=recv_ns))

    # -- queries -------------------------------------------------------------------------------
    def streams(self) -> list[StreamKey]:
        """Every stream seen, sorted."""
        return sorted(self._streams)

    def stream_stats(self, key: StreamKey) -> StreamStats | None:
        """The counters of one stream (None if never seen)."""
        st = self._streams.get(key)
        return None if st is None else _stats(st)

    def changed_stats(self) -> list[tuple[StreamKey, StreamStats]]:
        """Streams whose counters changed since the last call, with their stats."""
        out = []
        for key in sorted(self._streams):
            st = self._streams[key]
            now = [
                st.records,
                st.duplicates,
                st.last_recv_ns,
                st.state.value,
                st.head_seq,
                st.epoch,
            ]
            if now != st.reported:
                st.reported = now
                out.append((key, _stats(st)))
        return out

    def gaps(self) -> list[Gap]:
        """Gaps held: unresolved ones, and resolved ones ``changed_gaps`` has not handed out."""
        return [self._gaps[i] for i in sorted(self._gaps)]

    def open_gap_count(self) -> int:
        """Gaps still expected to fill (OPEN)."""
        return sum(len(st.open) for st in self._streams.values())

    def changed_gaps(self) -> list[Gap]:
        """Gaps new or changed since the last call (latest version each), for the ledger.

        Resolved gaps are forgotten once handed out here: the ledger keeps their history, the
        tracker only what can still change.
        """
        out = [self._gaps[i] for i in self._dirty]
        self._dirty.clear()
        pending = {st.time_gap for st in self._streams.values()}
        for gap in out:
            if gap.state is not GapState.OPEN and gap.gap_id not in pending:
                del self._gaps[gap.gap_id]
        return out

    # -- checkpoint ----------------------------------------------------------------------------
    def to_checkpoint(self) -> dict[str, Any]:
        """All state as plain JSON-able data; ``from_checkpoint`` rebuilds an equal tracker."""
        return {
            "format": CHECKPOINT_FORMAT,
            "next_gap_id": self._next_gap_id,
            "dirty": list(self._dirty),
            "gaps": [_gap_doc(g) for g in self._gaps.values()],
            "streams": [
                {
                    "channel": st.key.channel,
                    "symbol": st.key.symbol,
                    "state": st.state.value,
                    "epoch": st.epoch,
                    "base": st.base,
                    "above": [list(iv) for iv in st.above],
                    "open": [g.gap_id for g in st.open],
                    "requested": st.requested,
                    "records": st.records,
                    "duplicates": st.duplicates,
                    "first_seq": st.first_seq,
                    "last_seq": st.last_seq,
                    "last_push": st.last_push,
                    "last_recv_ns": st.last_recv_ns,
                    "head_seq": st.head_seq,
                    "time_gap": st.time_gap,
                    "broken": st.broken,
                    "timed": st.timed,
                    "reported": st.reported,
                }
                for st in self._streams.values()
            ],
        }

    @classmethod
    def from_checkpoint(
        cls, doc: dict[str, Any], *, reset_backwards: int = defaults.SEQ_RESET_BACKWARDS
    ) -> SequenceTracker:
        """Rebuild a tracker from ``to_checkpoint`` data.

        Raises:
            StoreError: the checkpoint is of another format or damaged.
        """
        if doc.get("format") != CHECKPOINT_FORMAT:
            raise StoreError(
                f"tracker checkpoint format {doc.get('format')!r}, expected {CHECKPOINT_FORMAT}",
                hint="rebuild the store from the journal",
            )
        tracker = cls(reset_backwards=reset_backwards)
        try:
            tracker._next_gap_id = int(doc["next_gap_id"])
            for g in doc["gaps"]:
                gap = Gap(
                    int(g["gap_id"]),
                    StreamKey(g["channel"], g["symbol"]),
                    g["from_seq"],
                    g["to_seq"],
                    g["from_ns"],
                    g["to_ns"],
                    GapState(g["state"]),
                    g["reason"],
                    int(g["epoch"]),
                )
                tracker._gaps[gap.gap_id] = gap
            tracker._dirty = dict.fromkeys(int(i) for i in doc["dirty"])
            for s in doc["streams"]:
                st = _Stream(StreamKey(s["channel"], s["symbol"]))
                st.state = SyncState(s["state"])
                st.epoch = int(s["epoch"])
                st.base = int(s["base"])
                st.above = [(int(lo), int(hi)) for lo, hi in s["above"]]
                st.open = [tracker._gaps[int(i)] for i in s["open"]]
                st.requested = s["requested"]
                st.records = int(s["records"])
                st.duplicates = int(s["duplicates"])
                st.first_seq = s["first_seq"]
                st.last_seq = s["last_seq"]
                st.last_push = s.get("last_push")  # absent from checkpoints before resets
                st.last_recv_ns = s["last_recv_ns"]
                st.head_seq = s["head_seq"]
                st.time_gap = s["time_gap"]
                st.broken = s.get("broken")  # absent from checkpoints before content checks
                st.timed = bool(s.get("timed", False))  # absent before timed streams
                st.reported = s["reported"]
                tracker._streams[st.key] = st
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(
                f"tracker checkpoint damaged: {exc!r}", hint="rebuild the store from the journal"
            ) from None
        return tracker

    # -- gap bookkeeping -----------------------------------------------------------------------
    def _take_id(self) -> int:
        gap_id = self._next_gap_id
        self._next_gap_id += 1
        return gap_id

    def _new_gap(
        self,
        st: _Stream,
        from_seq: int | None,
        to_seq: int | None,
        from_ns: int,
        to_ns: int | None,
        state: GapState,
        reason: str,
    ) -> Gap:
        gap = Gap(
            self._take_id(), st.key, from_seq, to_seq, from_ns, to_ns, state, reason, st.epoch
        )
        self._put(gap)
        return gap

    def _put(self, gap: Gap) -> None:
        self._gaps[gap.gap_id] = gap
        self._dirty[gap.gap_id] = None


def _advance(st: _Stream, trigger: _Trigger) -> None:
    st.state = _TRANSITIONS.get((st.state, trigger), st.state)


def _stats(st: _Stream) -> StreamStats:
    return StreamStats(
        st.state,
        st.records,
        st.duplicates,
        st.first_seq,
        st.last_seq,
        st.last_recv_ns,
        st.head_seq,
        len(st.open),
        st.epoch,
    )


def _bounds(gap: Gap) -> tuple[int, int]:
    """The seq range of an OPEN gap (OPEN gaps always have seq bounds)."""
    assert gap.from_seq is not None and gap.to_seq is not None
    return gap.from_seq, gap.to_seq


def _from_seq(gap: Gap) -> int:
    return _bounds(gap)[0]


def _find(above: list[tuple[int, int]], seq: int) -> tuple[int, int] | None:
    """The interval of ``above`` holding ``seq``, if any."""
    i = bisect_right(above, seq, key=_lo)
    if i and above[i - 1][1] >= seq:
        return above[i - 1]
    return None


def _top(st: _Stream) -> int:
    """The highest id known to the stream: settled, or missing in an OPEN gap (``expect``)."""
    top = st.above[-1][1] if st.above else st.base
    if st.open:
        top = max(top, _bounds(st.open[-1])[1])
    return top


def _covered(st: _Stream, lo: int, hi: int) -> bool:
    """Is every seq of [lo, hi] settled?"""
    if hi <= st.base:
        return True
    iv = _find(st.above, lo)
    return iv is not None and iv[1] >= hi


def _missing(st: _Stream, lo: int, hi: int) -> list[tuple[int, int]]:
    """The unsettled sub-ranges of [lo, hi] (lo > base)."""
    out = []
    at = lo
    for a, b in st.above[bisect_right(st.above, lo - 1, key=_hi) :]:
        if a > hi:
            break
        if a > at:
            out.append((at, a - 1))
        at = max(at, b + 1)
    if at <= hi:
        out.append((at, hi))
    return out


def _add_range(st: _Stream, lo: int, hi: int) -> None:
    """Mark [lo, hi] settled: merge it into ``above``, then advance ``base`` over it."""
    lo = max(lo, st.base + 1)
    if lo > hi:
        return
    above = st.above
    j = bisect_right(above, lo - 2, key=_hi)  # first interval ending at or after lo - 1
    k = bisect_right(above, hi + 1, key=_lo)  # first interval starting after hi + 1
    if j < k:
        lo = min(lo, above[j][0])
        hi = max(hi, above[k - 1][1])
    above[j:k] = [(lo, hi)]
    if above[0][0] == st.base + 1:
        st.base = above[0][1]
        del above[0]


def _gap_doc(gap: Gap) -> dict[str, Any]:
    return {
        "gap_id": gap.gap_id,
        "channel": gap.key.channel,
        "symbol": gap.key.symbol,
        "from_seq": gap.from_seq,
        "to_seq": gap.to_seq,
        "from_ns": gap.from_ns,
        "to_ns": gap.to_ns,
        "state": gap.state.value,
        "reason": gap.reason,
        "epoch": gap.epoch,
    }
