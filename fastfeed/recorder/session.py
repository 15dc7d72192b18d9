"""The conversation with the venue: subscribe with resume, resync gaps, act on derived actions.

``Session`` is the connection's ``FeedHandler``: it journals every command before sending it
(so after a crash the journal shows what was asked and when), subscribes each stream from where
the pipeline says it stands, re-subscribes gapped streams as the resync scheduler allows, and
acts on what the applier derived (fastfeed/derive/pipeline.py ``Actions``).
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
from fastfeed.derive.streams import StreamKey
from fastfeed.errors import FastfeedError
from fastfeed.journal import RecordKind
from fastfeed.logs import RateLimiter
from fastfeed.recorder.config import Subscriptions
from fastfeed.recorder.connection import Connection
from fastfeed.recorder.feed import Feed, rejection_error
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
        if conn is None or not conn.connected:
            return  # the next connect subscribes to the new set
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
        elif actions.gapped:
            self.resync()

    def resync(self) -> None:
        """Re-subscribe gapped streams with resume, as the scheduler allows."""
        conn = self.connection
        if conn is None or not conn.connected:
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

    def _send(self, connection: Connection, payload: bytes) -> None:
        # Journal first: after a crash the journal shows what we asked for and when.
        self._feed.append(RecordKind.OUTBOUND, payload)
        connection.send(payload)

    def _subscribe(self, connection: Connection, channel: str, symbols: list[str]) -> None:
        resume = {
            s: point
            for s in symbols
            if (point := self._pipeline.resume_point(StreamKey(channel, s))) is not None
        }
        self._send(connection, self._adapter.subscribe(channel, symbols, resume or None))

    # -- FeedHandler ---------------------------------------------------------------------------
    def on_connected(self, connection: Connection) -> None:
        self.down_since = None
        self._feed.append(RecordKind.CONNECTION, orjson.dumps({"event": "connected"}))
        for channel, symbols in self.subscriptions.items():
            self._subscribe(connection, channel, symbols)
        keys = [StreamKey(c, s) for c, syms in self.subscriptions.items() for s in syms]
        self._resyncs.asked(keys, time.monotonic())

    def on_frame(self, payload: bytes, binary: bool) -> None:
        self._feed.on_frame(payload, binary)

    def on_disconnected(self, reason: str) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
        doc = {"event": "disconnected", "reason": reason}
        self._feed.append(RecordKind.CONNECTION, orjson.dumps(doc))

    def on_heartbeat(self, connection: Connection) -> None:
        ping = self._adapter.ping()
        if ping is not None:
            self._send(connection, ping)


def describe(subs: Subscriptions) -> str:
    """``channel:sym,sym channel:sym`` for a log line."""
    return " ".join(f"{ch}:{','.join(syms)}" for ch, syms in subs.items()) or "nothing"
