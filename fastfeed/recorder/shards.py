"""Connections to a venue that cannot replay: streams split across connections, each connection
rotated before the venue closes it, gaps recovered with REST snapshots.

Shape (one ``ShardedFeed`` per recorder)::

    subscriptions --split by max_streams--> shards --one live link each--> Connection (picows)
    link --frames--> owner.journal_record (journal first) --> the applier derives them
    applier's gaps (on_derived) --after reorder_grace_s--> snapshot (SnapshotFetcher) or a GAP
        "lost" record

Rotation is make-before-break: when a link has been connected ``rotate_after_s`` (Binance
closes at 24 h), a second link subscribes the same streams; the old one closes once the new one
has delivered, for every snapshot-resynced stream (diff depth), a push after which, once the
applier has derived it, the stream has no open gap, i.e. one that continues the sequence the
old link kept (or ``rotation_timeout_s`` passed: a gap then gets a snapshot like any other).
Pushes both links deliver are told apart by their ids (the tracker counts the second copy as a
duplicate); a stream without ids is taken from one link at a time, the other's frames journaled
with ``FLAG_SHADOW`` and not derived.

Each link's frames take the Cython sink (``FeedOwner.listener``: its own journal slot and stream
table), but while two links overlap, when frames are diverted to ``on_frame`` to be parsed and
journaled here: only then is a frame's flag (``FLAG_SHADOW``) or proof a question.

Journal: every link has its own slot (the record header's ``stream``); connection events carry
the slot; a retired link's close is ``{"event":"rotated"}``, not a disconnect, so streams
without ids get no time gap from a rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, Protocol, cast

import orjson

from fastfeed import defaults
from fastfeed.derive.rest_record import RestHead, encode_rest
from fastfeed.derive.streams import StreamKey
from fastfeed.journal import FLAG_BINARY, FLAG_SHADOW, RecordKind
from fastfeed.recorder._sink import FrameSink
from fastfeed.recorder.connection import Connection
from fastfeed.recorder.oversize import size_text
from fastfeed.recorder.rest import HttpResponse, SnapshotFetcher, safe_url
from fastfeed.venues.base import ShardVenue, SnapshotVenue
from fastfeed.venues.events import Message

__all__ = ["FeedOwner", "ShardedFeed", "split_streams"]

log = logging.getLogger("fastfeed.shards")

Subscriptions = dict[str, list[str]]


class FeedOwner(Protocol):
    """What the feed needs of the recorder. All calls happen on the event loop thread."""

    def journal_record(self, kind: RecordKind, payload: bytes, flags: int, slot: int) -> int | None:
        """Journal one record (the applier derives it); its LSN, None if the journal refused."""
        ...

    def wake_applier(self) -> None:
        """Derive what is journaled now rather than at the next interval."""
        ...

    def listener(self, connection: Connection, slot: int) -> FrameSink:
        """The sink that journals connection ``slot``'s frames."""
        ...

    def release(self, slot: int) -> None:
        """Connection ``slot`` is closed for good."""
        ...

    def gapped_streams(self) -> set[StreamKey]:
        """Streams with a gap still open."""
        ...

    def last_seq(self, key: StreamKey) -> int | None:
        """The highest id received on a stream."""
        ...


def split_streams(subs: Subscriptions, per_connection: int) -> list[Subscriptions]:
    """Cut the subscription set into pieces of at most ``per_connection`` streams, in order."""
    shards: list[Subscriptions] = []
    count = per_connection
    for channel, symbols in subs.items():
        for symbol in symbols:
            if count == per_connection:
                shards.append({})
                count = 0
            shards[-1].setdefault(channel, []).append(symbol)
            count += 1
    return shards


def _keys(shard: Subscriptions) -> Iterator[StreamKey]:
    for channel, symbols in shard.items():
        for symbol in symbols:
            yield StreamKey(channel, symbol)


HOUR_S = 3600.0


class _Pacer:
    """When a connection may send its next command: one under the venue's rate per second, and
    within its hourly budget if it has one (OKX: 480 subscribes and unsubscribes per hour per
    connection). Sans clock: the caller passes the time."""

    def __init__(self, per_s: int, per_hour: int | None) -> None:
        self._gap_s = 1.0 / max(1, per_s - 1)
        self._per_hour = per_hour
        self._last = -self._gap_s  # nothing sent yet
        self._sent: deque[float] = deque()  # send times of the last hour (hourly budget only)

    def wait_s(self, now: float) -> float:
        """Seconds to wait before the next command may go."""
        wait = self._last + self._gap_s - now
        if self._per_hour is not None:
            while self._sent and self._sent[0] <= now - HOUR_S:
                self._sent.popleft()
            if len(self._sent) >= self._per_hour:
                wait = max(wait, self._sent[0] + HOUR_S - now)
        return max(0.0, wait)

    def sent(self, now: float) -> None:
        """A command went at ``now``."""
        self._last = now
        if self._per_hour is not None:
            self._sent.append(now)


class _Link:
    """One connection of a shard: the ``FeedHandler`` of its ``Connection``."""

    def __init__(self, feed: ShardedFeed, slot: int, shard: Subscriptions, rotation: bool) -> None:
        self.feed = feed
        self.slot = slot
        self.shard = shard
        self.connection = Connection(
            feed.url,
            feed.log_url,
            self,
            ssl_context=feed.ssl_context,
            stall_timeout_s=feed.stall_timeout_s,
            ping_interval_s=feed.ping_interval_s,
            listener=self._listener,
        )
        self.sink: FrameSink | None = None  # the current connection's
        self.task: asyncio.Task[None] | None = None
        self.up = asyncio.Event()
        self.connected_at = 0.0
        # During a rotation: the streams this new link has not yet shown continuing.
        self.proving: set[StreamKey] | None = None
        # ... and the LSN of the latest such push, judged once the applier has derived it.
        self.awaiting: dict[StreamKey, int] = {}
        self.proven = asyncio.Event()
        self.rotation = rotation  # subscribed to take over: its first connect is no reconnect
        self.retiring = False
        self._pacer: asyncio.Task[None] | None = None
        self._resubscribe: Subscriptions = {}  # streams waiting for a paced resubscribe
        self._wake = asyncio.Event()  # ... set when one is added

    def _listener(self, connection: Connection) -> FrameSink:
        self.sink = self.feed.owner.listener(connection, self.slot)
        return self.sink

    def divert(self, on: bool) -> None:
        """Send this link's frames to ``on_frame`` (two links overlap) or through the sink."""
        if self.sink is not None:
            self.sink.divert = on

    # -- FeedHandler ---------------------------------------------------------------------------
    def on_connected(self, connection: Connection) -> None:
        self.connected_at = time.monotonic()
        self.up.set()
        first_of_rotation = self.rotation
        self.rotation = False
        event = "rotation connected" if first_of_rotation else "connected"
        self.feed.control(RecordKind.CONNECTION, {"event": event, "slot": self.slot}, self.slot)
        if first_of_rotation:
            self.proving = {k for k in _keys(self.shard) if self.feed.adapter.has_snapshots(k[0])}
            if not self.proving:
                self.proving = None
                self.proven.set()
        else:
            self.proving = None
            adapter = self.feed.adapter
            self.feed.want_snapshots(k for k in _keys(self.shard) if adapter.has_snapshots(k[0]))
        self.divert(self.proving is not None)
        batch = self.feed.adapter.max_args_per_command
        commands = self.feed.adapter.opening_commands() + [
            self.feed.adapter.subscribe(channel, symbols[i : i + batch])
            for channel, symbols in self.shard.items()
            for i in range(0, len(symbols), batch)
        ]
        self._pacer = asyncio.create_task(self._send_paced(connection, commands))

    def resubscribe(self, key: StreamKey) -> None:
        """Queue an unsubscribe and subscribe of the stream: the venue sends its book again.
        The pacer batches a channel's queued symbols into one command of each."""
        symbols = self._resubscribe.setdefault(key.channel, [])
        if key.symbol not in symbols:
            symbols.append(key.symbol)
        self._wake.set()

    async def _send_paced(self, connection: Connection, commands: list[bytes]) -> None:
        """Send the opening commands, then the queued resubscribes until the connection ends,
        no faster than the venue accepts commands (``_Pacer``)."""
        adapter = self.feed.adapter
        pacer = _Pacer(adapter.commands_per_s, adapter.commands_per_hour)
        for payload in commands:
            if not await self._send(connection, pacer, payload):
                return
        batch = adapter.max_args_per_command
        while True:
            await self._wake.wait()
            self._wake.clear()
            wanted, self._resubscribe = self._resubscribe, {}
            for channel, symbols in wanted.items():
                for i in range(0, len(symbols), batch):
                    chunk = symbols[i : i + batch]
                    log.warning(
                        "gap on %s:%s: resubscribing for a fresh snapshot", channel, ",".join(chunk)
                    )
                    for payload in (
                        adapter.unsubscribe(channel, chunk),
                        adapter.subscribe(channel, chunk),
                    ):
                        if not await self._send(connection, pacer, payload):
                            return

    async def _send(self, connection: Connection, pacer: _Pacer, payload: bytes) -> bool:
        """Journal and send one command when the pacer allows; False once the send fails."""
        wait = pacer.wait_s(time.monotonic())
        if wait:
            await asyncio.sleep(wait)
        pacer.sent(time.monotonic())
        self.feed.control_raw(RecordKind.OUTBOUND, payload, self.slot)
        return connection.send(payload)

    def on_frame(self, payload: bytes, binary: bool) -> None:
        flags = FLAG_BINARY if binary else 0
        proving = self.proving
        key = None
        if proving is not None or self.retiring:
            # Only while two links overlap (seconds a day) is a frame parsed here as well.
            event = self.feed.adapter.parse(payload, 0, binary=binary)
            if type(event) is Message:
                key = StreamKey(event.channel, event.symbol)
                if event.seq is None or not self.feed.adapter.sequenced(event.channel):
                    flags |= FLAG_SHADOW  # the other link's copy is the one derived
        lsn = self.feed.owner.journal_record(RecordKind.INBOUND, payload, flags, self.slot)
        if lsn is not None and proving is not None and key in proving:
            self.awaiting[key] = lsn
            self.feed.owner.wake_applier()

    def judge(self, derived_lsn: int, gapped: set[StreamKey]) -> None:
        """The applier derived up to ``derived_lsn``: a stream whose awaited push is derived
        and that has no open gap is proven; once all are, the link may take over."""
        proving = self.proving
        if proving is None:
            self.awaiting.clear()
            return
        for key, lsn in list(self.awaiting.items()):
            if lsn <= derived_lsn:
                del self.awaiting[key]
                if key not in gapped:
                    proving.discard(key)
        if not proving:
            self.proving = None
            self.divert(False)
            self.proven.set()

    def on_disconnected(self, reason: str) -> None:
        self.up.clear()
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None
        self._resubscribe = {}  # the reconnect subscribes every stream again
        doc: dict[str, object] = {"slot": self.slot}
        if self.retiring:
            doc["event"] = "rotated"
        else:
            doc.update(event="disconnected", reason=reason)
        self.feed.control(RecordKind.CONNECTION, doc, self.slot)

    def on_oversized(self, size: int | None) -> None:
        # No resume by seq here: the reconnect subscribes live, the frame is not resent, and the
        # ids it held open a gap at the next push that a snapshot recovers. Only counted.
        what = size_text(size)
        log.error("a frame over the size limit (%s) ended connection %d", what, self.slot)
        self.feed.control(RecordKind.GAP, {"event": "oversized", "size": size}, self.slot)

    def on_heartbeat(self, connection: Connection) -> None:
        ping = self.feed.adapter.ping()
        if ping is None:
            # Binance pings us only every 20 s (spot) or 3 min (futures): a quiet stream would
            # look stalled. Our ping frame's pong keeps a healthy connection visibly alive
            # (a ping counts as one of the 5 or 10 messages per second allowed).
            connection.send_ping()
        else:
            self.feed.control_raw(RecordKind.OUTBOUND, ping, self.slot)
            connection.send(ping)


class ShardedFeed:
    """Every connection to the venue, their rotation, and snapshot recovery (module docstring)."""

    def __init__(
        self,
        adapter: ShardVenue,
        ws_base: str,
        rest_base: str | None,
        subscriptions: Subscriptions,
        owner: FeedOwner,
        *,
        ssl_context: ssl.SSLContext | None = None,
        rest_ssl_context: ssl.SSLContext | None = None,
        stall_timeout_s: float = defaults.STALL_TIMEOUT_S,
        ping_interval_s: float = defaults.PING_INTERVAL_S,
        rotate_after_s: float | None = defaults.ROTATE_AFTER_S,
        rotation_timeout_s: float = defaults.ROTATION_TIMEOUT_S,
        reorder_grace_s: float = defaults.REORDER_GRACE_S,
    ) -> None:
        self.adapter = adapter
        self.owner = owner
        self.url = adapter.url(ws_base, None)
        self.log_url = adapter.redacted_url(ws_base)
        self.ssl_context = ssl_context
        self.stall_timeout_s = stall_timeout_s
        self.ping_interval_s = ping_interval_s
        self._shards = split_streams(subscriptions, adapter.max_streams)
        self._rotate_after = rotate_after_s
        self._rotation_timeout = rotation_timeout_s
        self._grace = reorder_grace_s
        # REST snapshots (``rest_base`` given: a SnapshotVenue); without, a gap is recovered by
        # resubscribing its stream: the venue sends the book again in the feed.
        self._fetcher = (
            None
            if rest_base is None
            else SnapshotFetcher(
                cast(SnapshotVenue, adapter), rest_base, self._on_rest, ssl_context=rest_ssl_context
            )
        )
        self._links: list[_Link] = []
        self._next_slot = 1
        self._stopping = asyncio.Event()
        self._snapshot_due: dict[StreamKey, float] = {}  # key -> when to ask (monotonic)
        self._gapped_since: dict[StreamKey, float] = {}
        self._asked: dict[StreamKey, float] = {}
        self.rotations = 0

    # -- what the recorder reads ---------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Every shard has a live connection."""
        live = {id(link.shard) for link in self._links if link.connection.connected}
        return len(live) == len(self._shards)

    @property
    def reconnects(self) -> int:
        """Reconnects of every connection so far (rotations are not reconnects)."""
        return sum(link.connection.reconnects for link in self._links)

    @property
    def banned(self) -> str | None:
        """Why snapshots stopped, if the venue banned us from REST."""
        return None if self._fetcher is None else self._fetcher.banned

    # -- lifecycle -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect every shard and keep them connected and rotated until ``stop()``."""
        async with asyncio.TaskGroup() as tasks:
            helpers = [tasks.create_task(self._recovery(), name="recovery")]
            if self._fetcher is not None:
                helpers.append(tasks.create_task(self._fetcher.run(), name="snapshots"))
            for n, shard in enumerate(self._shards):
                tasks.create_task(self._run_shard(shard), name=f"shard-{n}")
            await self._stopping.wait()
            for helper in helpers:
                helper.cancel()

    def stop_reading(self) -> None:
        """Stop taking data from every socket (first step of a graceful stop)."""
        for link in self._links:
            link.connection.stop_reading()

    def stop(self) -> None:
        """Close every connection; ``run`` returns once they are closed."""
        self._stopping.set()
        for link in self._links:
            link.connection.stop()

    def drop(self, reason: str) -> None:
        """Abort every connection now."""
        for link in self._links:
            link.connection.drop(reason)

    def _start_link(self, shard: Subscriptions, *, rotation: bool) -> _Link:
        link = _Link(self, self._next_slot, shard, rotation)
        self._next_slot += 1
        self._links.append(link)
        link.task = asyncio.create_task(link.connection.run(), name=f"link-{link.slot}")
        return link

    async def _run_shard(self, shard: Subscriptions) -> None:
        current = self._start_link(shard, rotation=False)
        try:
            while not self._stopping.is_set():
                if not current.up.is_set():
                    await _first(self._stopping.wait(), current.up.wait())
                    continue
                if self._rotate_after is None:
                    await self._stopping.wait()  # a venue that keeps connections: no rotation
                    continue
                left = current.connected_at + self._rotate_after - time.monotonic()
                if left > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), left)
                    continue
                current = await self._rotate(current)
        finally:
            for link in [lk for lk in self._links if lk.shard is shard]:
                link.connection.stop()
                if link.task is not None:
                    await asyncio.gather(link.task, return_exceptions=True)
                self._links.remove(link)
                self.owner.release(link.slot)

    async def _rotate(self, old: _Link) -> _Link:
        """Make before break: the new link takes over once it continues every sequence."""
        log.info("rotating connection %d after %g s", old.slot, self._rotate_after)
        new = self._start_link(old.shard, rotation=True)
        try:
            await asyncio.wait_for(
                _first(new.proven.wait(), self._stopping.wait()), self._rotation_timeout
            )
        except TimeoutError:
            log.warning(
                "rotation: connection %d did not continue every stream in %g s; switching anyway"
                " (gaps get snapshots)",
                new.slot,
                self._rotation_timeout,
            )
            new.proving = None
            new.divert(False)
        old.retiring = True
        old.divert(True)
        old.connection.stop()
        if old.task is not None:
            await asyncio.gather(old.task, return_exceptions=True)
        self._links.remove(old)
        self.owner.release(old.slot)
        self.rotations += 1
        return new

    # -- gaps and snapshots --------------------------------------------------------------------
    def want_snapshots(self, keys: Iterable[StreamKey]) -> None:
        """Ask for snapshots of ``keys`` once the reorder grace has passed."""
        due = time.monotonic() + self._grace
        for key in keys:
            self._snapshot_due.setdefault(key, due)

    def on_derived(self, opened: set[StreamKey], derived_lsn: int) -> None:
        """The applier derived the journal up to ``derived_lsn``: note the streams whose gap
        opened, and judge the pushes rotating links are waiting on."""
        if opened:
            now = time.monotonic()
            for key in opened:
                self._gapped_since.setdefault(key, now)
        waiting = [link for link in self._links if link.awaiting]
        if waiting:
            gapped = self.owner.gapped_streams()
            for link in waiting:
                link.judge(derived_lsn, gapped)

    async def _recovery(self) -> None:
        """Every half grace: gaps older than the grace get a snapshot, or are given up."""
        while True:
            await asyncio.sleep(self._grace / 2)
            now = time.monotonic()
            gapped = self.owner.gapped_streams()
            for key in [k for k in self._gapped_since if k not in gapped]:
                del self._gapped_since[key]  # filled (a reordered push) or resolved
                self._asked.pop(key, None)
            for key in gapped:
                since = self._gapped_since.setdefault(key, now)
                asked = self._asked.get(key)
                if now - since < self._grace or (
                    asked is not None and now - asked < defaults.SNAPSHOT_RETRY_S
                ):
                    continue
                self._asked[key] = now
                if self._fetcher is None:
                    self._resubscribe(key)
                elif self.adapter.has_snapshots(key.channel) and self._fetcher.banned is None:
                    self._fetcher.request(key)
                else:
                    self._give_up(key)
            for key, due in list(self._snapshot_due.items()):
                if now >= due and self._fetcher is not None:
                    del self._snapshot_due[key]
                    self._fetcher.request(key)

    def _resubscribe(self, key: StreamKey) -> None:
        """Unsubscribe and subscribe the stream on the connection carrying it (paced there):
        the venue sends its book again, which the applier takes as the stream's snapshot."""
        for link in self._links:
            if key.symbol in link.shard.get(key.channel, ()) and not link.retiring:
                if link.connection.connected:  # else the reconnect subscribes it again
                    link.resubscribe(key)
                return

    def _give_up(self, key: StreamKey) -> None:
        """Nothing can fill this gap (no replay, no snapshot): journal it as lost."""
        upto = self.owner.last_seq(key)
        if upto is None:
            return
        banned = self.banned
        reason = (
            "not replayable, no snapshot: " + banned
            if banned
            else "not replayable and no snapshot for this channel"
        )
        marker = {"event": "lost", "channel": key.channel, "symbol": key.symbol, "upto": upto}
        self.control(RecordKind.GAP, marker | {"reason": reason}, 0)

    def _on_rest(self, key: StreamKey, url: str, response: HttpResponse) -> None:
        head = RestHead(safe_url(url), response.status, key.channel, key.symbol)
        self.owner.journal_record(RecordKind.REST, encode_rest(head, response.body), 0, 0)

    # -- journaling helpers --------------------------------------------------------------------
    def control(self, kind: RecordKind, doc: dict[str, object], slot: int) -> None:
        """Journal a JSON record (connection events, gap markers)."""
        self.owner.journal_record(kind, orjson.dumps(doc), 0, slot)

    def control_raw(self, kind: RecordKind, payload: bytes, slot: int) -> None:
        """Journal raw bytes (commands sent)."""
        self.owner.journal_record(kind, payload, 0, slot)


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    """Return when the first of ``waits`` finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
