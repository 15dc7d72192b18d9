"""The JetStream side of ``fastfeed publish``: a window of publishes, acks, the cursor, reconcile.

Messages leave as plain NATS publishes with a reply subject of ours (``<inbox>.<token>``); the
stream's leader answers each with a PubAck (``{"stream", "seq", "duplicate"?}``) or an error.
That is what nats-py's ``publish_async`` does, without its per-message future, whose ack never
resolves when the server answers an API error (nats-io/nats.py#985): here every publish has
its own deadline, and an unanswered or refused one is sent again with the same ``Nats-Msg-Id``.

Exactly once, whatever stops: the cursor (fastfeed/publish/cursor.py) only moves past a chunk
of records once every message of it and before it is acknowledged, and a start reconciles the
stream from the cursor's ``floor_seq``: ids already stored are not sent again, however long ago
(the server's duplicate window alone would forget them). A stream created anew since the cursor
was saved, or one whose last sequence went below it (writes the cluster lost), is read whole
and everything the journal still holds is offered again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fastfeed import defaults
from fastfeed.errors import FastfeedError
from fastfeed.journal import durable_mark
from fastfeed.publish.cursor import Cursor, save_cursor
from fastfeed.publish.follower import Chunk, Follower, Outgoing
from fastfeed.publish.reading import StreamReadError, read_stream, stream_info
from fastfeed.publish.subjects import HDR_MSG_ID
from fastfeed.publish.wire import hpub, write

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

__all__ = ["Counters", "PublishError", "Publisher"]

log = logging.getLogger("fastfeed.publish")


class PublishError(FastfeedError):
    """The stream cannot be published to or read (missing, unreachable, refused)."""


@dataclass(slots=True)
class _ChunkState:
    chunk: Chunk
    pending: int = 0  # messages sent and not yet acknowledged
    sent_all: bool = False
    floor_seq: int | None = None  # highest acked stream seq seen when its first message left


@dataclass(slots=True)
class _Entry:
    msg: Outgoing
    chunk: _ChunkState
    sent_at: float = 0.0


@dataclass(slots=True)
class Counters:
    """What the publisher did since it started (metrics read these)."""

    published: int = 0  # publishes sent, re-sends included
    acks: int = 0  # PubAcks received (duplicates included)
    resends: int = 0  # publishes sent again: ack timeout or an error answer
    duplicates: int = 0  # PubAcks saying the id was already stored
    errors: int = 0  # error answers (503 no responders, API errors)
    reconciled: int = 0  # messages found already stored by reconcile, not sent again
    rewinds: int = 0  # starts that found the stream recreated or regressed
    cursor_writes: int = 0


class Publisher:
    """Publishes a ``Follower``'s chunks to one stream; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        journal_dir: Path,
        venue: str,
        stream: str,
        cursor_file: Path,
        cursor: Cursor,
        prefix: str = defaults.PUBLISH_SUBJECT_PREFIX,
        window: int = defaults.PUBLISH_WINDOW,
        ack_timeout_s: float = defaults.PUBLISH_ACK_TIMEOUT_S,
    ) -> None:
        self._nc, self._js = nc, js
        self._dir = journal_dir
        self._venue = venue
        self.stream = stream
        self._cursor_file = cursor_file
        self.cursor = cursor
        self._prefix = prefix
        self._window = window
        self._ack_timeout = ack_timeout_s
        self.follower = Follower(
            journal_dir,
            venue,
            prefix,
            next_lsn=cursor.acked_lsn + 1,
            tracker_state=cursor.tracker,
        )
        self.counters = Counters()
        self.durable_lsn = 0
        self.acked_lsn = cursor.acked_lsn
        self.max_ack_seq = 0
        self.caught_up_at = time.monotonic()  # when acked_lsn last reached durable_lsn
        self._chunks: collections.deque[_ChunkState] = collections.deque()
        self._pending: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        self._retry: collections.deque[_Entry] = collections.deque()
        self._token = 0
        self._out: list[bytes] = []  # HPUB commands not yet handed to the connection
        self._acked_token = 0  # the newest publish acknowledged (tokens count up as sent)
        self._acked_at = time.monotonic()  # when the last ack arrived
        self._slowest = 0.0  # the longest recent time from send to ack, seconds (decays)
        self._inbox = b""
        self._room = asyncio.Event()
        self._backoff = defaults.PUBLISH_BACKOFF_INITIAL_S
        self._paused_until = 0.0
        self._skip: set[str] = set()
        self._skip_upto = 0
        self._dirty = False
        self._save_lock = threading.Lock()
        self._tracker: dict[str, Any] | None = cursor.tracker

    # -- start: reconcile ------------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Compare the stream with the cursor; learn which ids after it are already stored.

        Raises:
            PublishError: the stream does not exist or cannot be read.
        """
        from nats.js.errors import NotFoundError

        try:
            info = await stream_info(self._js, self.stream)
        except StreamReadError as exc:
            raise PublishError(str(exc)) from None
        except NotFoundError:
            raise PublishError(
                f"no JetStream stream {self.stream!r}",
                hint="create it with --create-stream (docs/scale-out.md has the settings)",
            ) from None
        created = info.created.isoformat() if info.created else None
        last = info.state.last_seq
        floor = self.cursor.floor_seq
        fresh = self.cursor.stream_created is None
        if not fresh and (created != self.cursor.stream_created or last < floor):
            why = "was recreated" if created != self.cursor.stream_created else "lost writes"
            log.warning(
                "stream %s %s since the cursor was saved (last seq %d, cursor floor %d):"
                " offering the whole retained journal again",
                self.stream,
                why,
                last,
                floor,
            )
            self.counters.rewinds += 1
            self.follower = Follower(self._dir, self._venue, self._prefix)
            self.acked_lsn = 0
            self._tracker = None
            floor = 0
        if not fresh:
            self._skip = await self._stored_ids(floor, last)
        self._skip_upto = durable_mark(self._dir)
        self.max_ack_seq = last  # whatever is sent from now on is stored above it
        self.cursor = Cursor(self.acked_lsn, last, created, self._tracker)
        # Saved before anything is sent: a fresh cursor then means nothing was ever sent.
        await asyncio.to_thread(self._save_now, self.cursor)
        log.info(
            "stream %s: last seq %d; resuming after LSN %d (%d ids stored past the cursor)",
            self.stream,
            last,
            self.acked_lsn,
            len(self._skip),
        )

    async def _stored_ids(self, floor: int, last: int) -> set[str]:
        """The ``Nats-Msg-Id`` of every message in the stream with seq in (floor, last]."""
        found: set[str] = set()
        try:
            async for msg in read_stream(
                self._js, self.stream, f"{self._prefix}.>", floor + 1, last, headers_only=True
            ):
                if msg.headers and HDR_MSG_ID in msg.headers:
                    found.add(msg.headers[HDR_MSG_ID])
        except StreamReadError as exc:
            raise PublishError(f"reconcile: {exc}") from None
        return found

    # -- the loop --------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop``; then wait a bounded time for acks and save the cursor."""
        inbox = self._nc.new_inbox()
        self._inbox = f"{inbox}.".encode()
        sub = await self._nc.subscribe(f"{inbox}.*", cb=self._on_ack)
        timer = asyncio.create_task(self._timer(stop), name="publish-timer")
        try:
            while not stop.is_set():
                self.durable_lsn = durable_mark(self._dir)
                chunk = self.follower.poll(self.durable_lsn, defaults.PUBLISH_CHUNK_RECORDS)
                if chunk is None:
                    if self.acked_lsn >= self.durable_lsn:
                        self.caught_up_at = time.monotonic()
                    await _wait(stop, defaults.PUBLISH_POLL_S)
                    continue
                await self._send_chunk(chunk, stop)
            await self._drain()
        finally:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
            await sub.unsubscribe()
        if self._dirty:
            await self._save()

    async def _send_chunk(self, chunk: Chunk, stop: asyncio.Event) -> None:
        state = _ChunkState(chunk)
        self._chunks.append(state)
        for msg in chunk.messages:
            if msg.msg_id in self._skip:
                self._skip.discard(msg.msg_id)
                self.counters.reconciled += 1
                continue
            while len(self._pending) >= self._window or self._paused_until:
                await self._flush()
                if stop.is_set():
                    return  # never sent_all: the cursor stays before this chunk
                self._room.clear()
                await _wait(self._room, defaults.PUBLISH_CURSOR_INTERVAL_S)
            if state.floor_seq is None:
                state.floor_seq = self.max_ack_seq
            state.pending += 1
            self._send(_Entry(msg, state))
            if len(self._out) >= defaults.PUBLISH_WRITE_BATCH:
                await self._flush()
        await self._flush()
        if self._skip and chunk.end_lsn >= self._skip_upto:
            self._skip = set()  # past the records reconcile was about
        state.sent_all = True
        self._advance()

    def _send(self, entry: _Entry) -> None:
        """Queue one publish; ``_flush`` hands the queue to the connection."""
        self._token += 1
        entry.sent_at = time.monotonic()
        self._pending[self._token] = entry
        self.counters.published += 1
        msg = entry.msg
        self._out.append(
            hpub(msg.subject, b"%b%d" % (self._inbox, self._token), msg.headers, msg.payload)
        )

    async def _flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            await write(self._nc, data)

    async def _on_ack(self, reply: Msg) -> None:
        """One answer from the stream: an ack moves the window; an error schedules a re-send."""
        try:
            token = int(reply.subject.rpartition(".")[2])
        except ValueError:
            return
        entry = self._pending.pop(token, None)
        if entry is None:
            return  # the answer to a publish that timed out and was sent again
        doc = _ack_doc(reply)
        seq = doc.get("seq") if doc is not None else None
        if doc is None or "error" in doc or not isinstance(seq, int):
            # 503 no responders (no stream leader yet), "in process", or any API error: the
            # message may or may not be stored; the same Msg-Id makes a re-send safe.
            self.counters.errors += 1
            self._retry.append(entry)
            self._paused_until = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, defaults.PUBLISH_BACKOFF_CAP_S)
            self._room.set()
            return
        self._backoff = defaults.PUBLISH_BACKOFF_INITIAL_S
        now = self._acked_at = time.monotonic()
        if now - entry.sent_at > self._slowest:
            self._slowest = now - entry.sent_at
        if token > self._acked_token:
            self._acked_token = token
        self.counters.acks += 1
        if doc.get("duplicate"):
            self.counters.duplicates += 1
        if seq > self.max_ack_seq:
            self.max_ack_seq = seq
        state = entry.chunk
        state.pending -= 1
        if state.pending == 0 and state.sent_all:
            self._advance()
        self._room.set()

    def _advance(self) -> None:
        """Move acked_lsn past every leading chunk that is wholly acknowledged."""
        moved = False
        while self._chunks and self._chunks[0].sent_all and self._chunks[0].pending == 0:
            done = self._chunks.popleft()
            self.acked_lsn = done.chunk.end_lsn
            if done.chunk.tracker_state is not None:
                self._tracker = done.chunk.tracker_state
            moved = True
        if not moved:
            return
        nxt = self._chunks[0].floor_seq if self._chunks else None
        floor = self.max_ack_seq if nxt is None else nxt
        self.cursor = Cursor(self.acked_lsn, floor, self.cursor.stream_created, self._tracker)
        self._dirty = True
        if self.acked_lsn >= self.durable_lsn:
            self.caught_up_at = time.monotonic()

    async def _timer(self, stop: asyncio.Event) -> None:
        """Re-send what timed out or was refused; save the cursor at most every interval."""
        while True:
            await asyncio.sleep(defaults.PUBLISH_CURSOR_INTERVAL_S)
            if self._paused_until and time.monotonic() >= self._paused_until:
                self._paused_until = 0.0
                self._room.set()
            if not self._paused_until:
                await self._resend_due()
            if self._dirty:
                await self._save()

    async def _resend_due(self) -> None:
        """Send again what is overdue: passed over by a later ack, or the stream went silent.

        A slow stream (one fsync per message on a plain disk) acks late but in order: its
        publishes are not re-sent while acks keep coming for ones sent before them.
        """
        if not self._nc.is_connected:
            # nats-py keeps what was written while disconnected and sends it on reconnect;
            # re-sends queued meanwhile would only pile up in its buffer, one window a round.
            return
        now = time.monotonic()
        # A stream that took long to ack lately gets as long again before we call it silent:
        # a server fsyncing each message on a busy disk acks a backlog late, not never.
        self._slowest *= defaults.PUBLISH_ACK_LATENCY_DECAY
        timeout = max(self._ack_timeout, 2 * self._slowest)
        silent = now - self._acked_at > timeout
        due: list[_Entry] = []
        while self._pending:
            token, entry = next(iter(self._pending.items()))
            if entry.sent_at + timeout > now or not (silent or token < self._acked_token):
                break
            del self._pending[token]
            due.append(entry)
        due.extend(self._retry)
        self._retry.clear()
        for entry in due:
            self.counters.resends += 1
            self._send(entry)
        await self._flush()

    async def _save(self) -> None:
        self._dirty = False
        await asyncio.to_thread(self._save_now, self.cursor)

    def _save_now(self, cursor: Cursor) -> None:
        # One writer of the file at a time: a save cancelled at shutdown keeps running on its
        # thread, and the final save must not rename the same temporary file under it.
        with self._save_lock:
            save_cursor(self._cursor_file, cursor)
            self.counters.cursor_writes += 1

    async def _drain(self) -> None:
        """At stop: give the acks of what was sent a bounded time to arrive (the timer re-sends)."""
        deadline = time.monotonic() + defaults.PUBLISH_DRAIN_TIMEOUT_S
        while self.in_flight and time.monotonic() < deadline:
            self._room.clear()
            await _wait(self._room, defaults.PUBLISH_CURSOR_INTERVAL_S)
        if self.in_flight:
            log.warning(
                "stopping with %d publishes unacknowledged: the next start reconciles them",
                self.in_flight,
            )

    @property
    def skipped(self) -> int:
        """Journal records deleted (retention, or by hand) before they could be published."""
        return self.follower.skipped

    @property
    def in_flight(self) -> int:
        """Publishes sent and not yet acknowledged."""
        return len(self._pending) + len(self._retry)


def _ack_doc(reply: Msg) -> dict[str, Any] | None:
    """The PubAck JSON, or None for a status-only answer (503 no responders) or junk."""
    if not reply.data:
        return None
    try:
        doc = orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Until ``stop`` is set or ``seconds`` pass."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
