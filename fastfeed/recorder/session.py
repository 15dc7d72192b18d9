"""The conversation with the venue: subscribe with resume, resync gaps, act on derived actions.

``Session`` is the connection's ``FeedHandler``: it journals every command before sending it
(so after a crash the journal shows what was asked and when), subscribes each stream from where
the pipeline says it stands, re-subscribes gapped streams as the resync scheduler allows, and
acts on what the applier derived (fastfeed/derive/pipeline.py ``Actions``). A frame over the
size limit that a resume keeps asking for is found (fastfeed/recorder/oversize.py), journaled
as a GAP ``oversized`` marker (its seq then LOST) and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import orjson

from fastfeed import defaults
from fastfeed.derive.pipeline import Actions, Pipeline
from fastfeed.derive.sequence import SyncState
from fastfeed.derive.streams import StreamKey
from fastfeed.errors import FastfeedError
from fastfeed.journal import RecordKind
from fastfeed.logs import RateLimiter
from fastfeed.recorder.config import Subscriptions
from fastfeed.recorder.connection import Connection
from fastfeed.recorder.feed import Feed, rejection_error
from fastfeed.recorder.oversize import Found, OversizeSearch, Phase, Verdict, size_text
from fastfeed.recorder.resync import ResyncScheduler
from fastfeed.venues.base import VenueAdapter

__all__ = ["Session"]

log = logging.getLogger("fastfeed.recorder")


class Session:
    """What the recorder says to the venue, and when (all calls on the event loop thread)."""

    def __init__(
        self,
        adapter: VenueAdapter,
        feed: Feed,
        pipeline: Pipeline,
        subscriptions: Subscriptions,
        fail: Callable[[FastfeedError], None],
    ) -> None:
        self._adapter = adapter
        self._feed = feed
        self._pipeline = pipeline
        self._fail = fail
        self._resyncs = ResyncScheduler()
        self._malformed_log = RateLimiter(defaults.MALFORMED_LOG_PER_MIN)
        self.subscriptions = {ch: list(syms) for ch, syms in subscriptions.items()}
        self.connection: Connection | None = None
        self.down_since: float | None = time.monotonic()  # None while connected (/healthz)
        self.started = False  # the "started" control record, with the subscriptions, is written
        self._oversize = OversizeSearch()
        # This connection's subscribes: stream -> (resume seq asked or None: live, its LSN).
        self._asked: dict[StreamKey, tuple[int | None, int]] = {}
        self._oversized = False  # the last connection ended on a frame over the limit ...
        self._oversized_size: int | None = None  # ... of this size (if its header said) ...
        self._oversized_lsn = 0  # ... judged once the applier derived its disconnect record
        self._unsubscribed: Connection | None = None  # connected, subscribes wait on that
        self._skip: dict[StreamKey, int] = {}  # resume at least here (a skipped frame's seq + 1)

    def journal_control(self, doc: dict[str, object]) -> None:
        """Journal a control record (subscription set changes, start-up)."""
        self._feed.append(RecordKind.CONTROL, orjson.dumps(doc))

    def change_subscriptions(self, new: Subscriptions) -> None:
        """SIGHUP: unsubscribe what went, subscribe (with resume) what came."""
        if not self.started:
            self.subscriptions = new  # journaled with the "started" record, sent at connect
            log.info("SIGHUP: will record %s", describe(new))
            return
        old = self.subscriptions
        self.subscriptions = new
        self.journal_control({"subscriptions": new})
        conn = self.connection
        if conn is None or not conn.connected or self._unsubscribed is not None:
            # The next connect subscribes the new set, and so does a connection whose
            # subscribes wait on an oversized frame's verdict (sent now, they would make
            # streams never asked on the last connection look like its suspects).
            return
        for channel, symbols in old.items():
            gone = [s for s in symbols if s not in new.get(channel, [])]
            if gone:
                self._send(conn, self._adapter.unsubscribe(channel, gone))
        for channel, symbols in new.items():
            added = [s for s in symbols if s not in old.get(channel, [])]
            if added:
                self._subscribe(conn, channel, added)
        log.info("SIGHUP: now recording %s", describe(new))

    def on_actions(self, actions: Actions) -> None:
        """Act on what the applier derived: report, stop on a fatal rejection, resync gaps."""
        for lsn, reason in actions.malformed:
            if self._malformed_log.allow():
                log.warning("malformed frame at LSN %d kept in the journal: %s", lsn, reason)
        for text in actions.rejected:
            log.error("%s", text)
        for text in actions.resets:
            log.warning("%s", text)
        if actions.fatal is not None:
            self._fail(rejection_error(self._adapter, actions.fatal.code, actions.fatal.message))
            return
        conn = self.connection
        waiting = self._unsubscribed
        if waiting is not None and self._pipeline.derived_lsn >= self._oversized_lsn:
            self._unsubscribed = None
            self._judge_oversized()
            self._subscribe_all(waiting)
        elif (
            self._oversize.phase is not Phase.IDLE
            and not self._oversized
            and conn is not None
            and conn.connected
        ):
            # Not while a connection's end on a frame over the limit awaits its verdict: a
            # batch released then would be subscribed before it, and judged as asked on the
            # connection that ended. A stream SIGHUP took away holds the search up no longer.
            verdict, released = self._oversize.progress(
                lambda key, seq: (
                    key.symbol not in self.subscriptions.get(key.channel, ())
                    or self._passed(key, seq)
                )
            )
            if verdict is not None:
                self._skip_frame(verdict)
            for channel, symbols in _by_channel(released).items():
                self._subscribe(conn, channel, symbols)
        if actions.gapped:
            self.resync()

    def resync(self) -> None:
        """Re-subscribe gapped streams with resume, as the scheduler allows."""
        conn = self.connection
        if conn is None or not conn.connected or self._unsubscribed is not None:
            return
        due = self._resyncs.due(self._pipeline.gapped_streams(), time.monotonic())
        for channel, symbols in due.items():
            log.warning("gap on %s:%s: re-subscribing with resume", channel, ",".join(symbols))
            self._subscribe(conn, channel, symbols)

    async def resync_loop(self, stop: asyncio.Event) -> None:
        """Retry resyncs whose gaps are still open (refused or lost acks) until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), defaults.RESYNC_MIN_INTERVAL_S)
            self.resync()

    def _send(self, connection: Connection, payload: bytes) -> int | None:
        # Journal first: after a crash the journal shows what we asked for and when.
        lsn = self._feed.append(RecordKind.OUTBOUND, payload)
        connection.send(payload)
        return lsn

    def _subscribe(self, connection: Connection, channel: str, symbols: list[str]) -> None:
        symbols = [s for s in symbols if self._oversize.allows(StreamKey(channel, s))]
        if not symbols:
            return
        resume = {}
        for symbol in symbols:
            key = StreamKey(channel, symbol)
            point = self._pipeline.resume_point(key)
            skip = self._skip.get(key)
            if skip is not None:
                if point is not None and point >= skip:
                    del self._skip[key]  # the marker is derived: the pipeline knows
                else:
                    point = skip
            if point is not None:
                resume[symbol] = point
        lsn = self._send(connection, self._adapter.subscribe(channel, symbols, resume or None))
        for symbol in symbols:
            self._asked[StreamKey(channel, symbol)] = (resume.get(symbol), lsn or 0)

    # -- a frame over the size limit -------------------------------------------------------------
    def _passed(self, key: StreamKey, seq: int) -> bool:
        """Whether ``key`` got past resume point ``seq``: the seq arrived, or the venue's ack
        (to the latest subscribe of it, derived) says it has nothing at ``seq`` yet."""
        point = self._pipeline.resume_point(key)
        if point is not None and point > seq:
            return True
        asked = self._asked.get(key)
        if asked is None or asked[0] != seq or self._pipeline.derived_lsn <= asked[1]:
            return False
        stats = self._pipeline.stream_stats(key)
        return (
            stats is not None
            and stats.state is not SyncState.RESYNCING
            and stats.head_seq is not None
            and stats.head_seq < seq
        )

    def _judge_oversized(self) -> None:
        """The last connection ended on a frame over the limit: judged at the next connect,
        when the applier has derived what came before it. A stream subscribed live, or that
        went past the seq it resumed at, held it if anything: its resume point now is the seq
        in question (on a resumed connection a frame is met mid-stream as often as not)."""
        self._oversized = False
        points: dict[StreamKey, int] = {}
        onward: set[StreamKey] = set()
        for key, (seq, _) in self._asked.items():
            now = self._pipeline.resume_point(key)
            if seq is None or (now is not None and now > seq):
                seq = now
                onward.add(key)
            if seq is not None:
                points[key] = seq
        verdict = self._oversize.oversized(
            self._oversized_size,
            points,
            lambda key, seq: key not in onward and self._passed(key, seq),
        )
        if verdict is not None:
            self._skip_frame(verdict)

    def _skip_frame(self, verdict: Verdict) -> None:
        """Journal the frame over the limit (the applier counts it, and LOSES its seq if known);
        resume its stream past it."""
        doc: dict[str, object] = {"event": "oversized", "size": verdict.size}
        what = size_text(verdict.size)
        limit = defaults.MAX_FRAME_BYTES
        if isinstance(verdict, Found):
            key = verdict.key
            doc.update(channel=key.channel, symbol=key.symbol, seq=verdict.seq)
            self._skip[key] = verdict.seq + 1
            log.error(
                "%s seq %d is a frame over the %d-byte limit (%s): recorded as lost, skipped",
                key,
                verdict.seq,
                limit,
                what,
            )
        else:
            log.error("a frame over the %d-byte limit (%s) was not resent: counted", limit, what)
        self._feed.append(RecordKind.GAP, orjson.dumps(doc))

    # -- FeedHandler ---------------------------------------------------------------------------
    def on_connected(self, connection: Connection) -> None:
        self.down_since = None
        self._feed.append(RecordKind.CONNECTION, orjson.dumps({"event": "connected"}))
        if self._oversized:
            if self._pipeline.derived_lsn < self._oversized_lsn:
                # The streams' resume points must include all that came before the frame.
                self._unsubscribed = connection  # subscribed by on_actions, once derived
                self._feed.wake_applier()
                return
            self._judge_oversized()
        self._subscribe_all(connection)

    def _subscribe_all(self, connection: Connection) -> None:
        self._asked = {}
        for channel, symbols in self.subscriptions.items():
            self._subscribe(connection, channel, symbols)
        keys = [StreamKey(c, s) for c, syms in self.subscriptions.items() for s in syms]
        self._resyncs.asked(keys, time.monotonic())

    def on_frame(self, payload: bytes, binary: bool) -> None:
        self._feed.on_frame(payload, binary)

    def on_disconnected(self, reason: str) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
        self._unsubscribed = None
        doc = {"event": "disconnected", "reason": reason}
        lsn = self._feed.append(RecordKind.CONNECTION, orjson.dumps(doc))
        if self._oversized and lsn is not None:
            self._oversized_lsn = lsn
            self._feed.wake_applier()

    def on_heartbeat(self, connection: Connection) -> None:
        ping = self._adapter.ping()
        if ping is not None:
            self._send(connection, ping)

    def on_oversized(self, size: int | None) -> None:
        self._oversized, self._oversized_size = True, size


def _by_channel(keys: list[StreamKey]) -> dict[str, list[str]]:
    """Streams grouped as a subscribe names them: channel -> symbols."""
    out: dict[str, list[str]] = {}
    for key in keys:
        out.setdefault(key.channel, []).append(key.symbol)
    return out


def describe(subs: Subscriptions) -> str:
    """``channel:sym,sym channel:sym`` for a log line."""
    return " ".join(f"{ch}:{','.join(syms)}" for ch, syms in subs.items()) or "nothing"
