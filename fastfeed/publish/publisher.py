"""The JetStream side of ``fastfeed publish``: fast-ingest batches, acks, the cursor, reconcile.

Messages leave in JetStream fast-ingest batches (ADR-50, nats-server 2.14+, a stream with
``allow_batched``): plain NATS publishes whose reply subject
``<inbox>.<batch>.<flow>.fail.<n>.<op>.$FI`` names the batch, each message's place ``n`` in it
and the operation (0 start, 1 append, 3 commit without storing). The leader answers the start,
then one flow ack ``{"type":"ack","seq":k,"msgs":m}`` per ``m`` messages, meaning (gap mode
``fail``) that messages 1..k of the batch are stored, and the commit with a PubAck. One answer
per few hundred messages instead of one each: the per-message ack was half the publisher's CPU.

Anything else (a gap: the server abandoned the batch; an error; a 503 while there is no leader;
silence past the ack timeout) drops the batch: what it did not acknowledge is sent again, after
a back-off, in a new batch with the same ``Nats-Msg-Id`` (the stream drops what it stored already).

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
import uuid
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
from fastfeed.publish.wire import header_block, hpub, write

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
    bseq: int = 0  # its place in the batch it was last sent in (0: never sent)


@dataclass(slots=True)
class Counters:
    """What the publisher did since it started (metrics read these)."""

    published: int = 0  # publishes sent, re-sends included
    acks: int = 0  # messages acknowledged as stored (by a flow ack or a batch's PubAck)
    resends: int = 0  # publishes sent again: ack timeout or an error answer
    batches: int = 0  # fast-ingest batches committed
    errors: int = 0  # error answers (503 no responders, gaps, API errors)
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
        ack_timeout_s: float = defaults.PUBLISH_ACK_TIMEOUT_S,
    ) -> None:
        self._nc, self._js = nc, js
        self._dir = journal_dir
        self._venue = venue
        self.stream = stream
        self._cursor_file = cursor_file
        self.cursor = cursor
        self._prefix = prefix
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
        self._sent: collections.deque[_Entry] = collections.deque()  # in the batch, not acked
        self._retry: collections.deque[_Entry] = collections.deque()
        self._out: list[bytes] = []  # HPUB commands not yet handed to the connection
        self._acked_at = time.monotonic()  # when the last ack arrived (or waiting began)
        self._slowest = 0.0  # the longest recent time from send to ack, seconds (decays)
        self._inbox = ""
        # The open batch: its id ("" when none), reply subject head, last place sent and acked.
        self._batch = ""
        self._reply_head = b""
        self._bseq = 0
        self._backed = 0
        self._started = False  # the server answered its first message (ADR-50: wait for it)
        self._closing = False  # its commit is sent: nothing more goes into it
        self._flow = defaults.PUBLISH_BATCH_FLOW  # messages per flow ack, as the server set it
        self._last_subject = b""
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
        if not info.config.allow_batched:
            raise PublishError(
                f"stream {self.stream!r} does not allow fast-ingest batches",
                hint="set allow_batched in its config (nats-server 2.14+; docs/scale-out.md)",
            )
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
            self.follower.close()
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
        self._inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(f"{self._inbox}.>", cb=self._on_ack)
        timer = asyncio.create_task(self._timer(stop), name="publish-timer")
        try:
            while not stop.is_set():
                self.durable_lsn = durable_mark(self._dir)
                chunk = self.follower.poll(self.durable_lsn, defaults.PUBLISH_CHUNK_RECORDS)
                if chunk is None:
                    self._send_retries()
                    await self._flush()
                    if self.acked_lsn >= self.durable_lsn:
                        self.caught_up_at = time.monotonic()
                    await _wait(stop, defaults.PUBLISH_POLL_S)
                    continue
                await self._send_chunk(chunk, stop)
            await self._drain()
        finally:
            self.follower.close()  # a later poll maps the journal again
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
            while self._retry or not self._can_send():
                self._send_retries()
                if not self._retry and self._can_send():
                    break
                self._room.clear()
                await self._flush()
                if stop.is_set():
                    return  # never sent_all: the cursor stays before this chunk
                if not self._can_send():
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

    def _can_send(self) -> bool:
        """Whether one more message may go out now (a new batch is opened if none is)."""
        if self._paused_until:
            return False
        if not self._batch:
            return True
        if self._closing or not self._started:
            return False
        ahead = min(defaults.PUBLISH_WINDOW, self._flow * defaults.PUBLISH_BATCH_ACKS_AHEAD)
        return self._bseq - self._backed < ahead

    def _send_retries(self) -> None:
        """Queue what a dropped batch left unacknowledged, as far as the batch allows."""
        while self._retry and self._can_send():
            self._send(self._retry.popleft())

    def _send(self, entry: _Entry) -> None:
        """Queue one publish into the open batch (opening one); ``_flush`` sends the queue."""
        if not self._batch:
            self._open_batch()
        if entry.bseq:
            self.counters.resends += 1
        self._bseq += 1
        now = entry.sent_at = time.monotonic()
        if not self._sent:
            self._acked_at = now  # silence is counted from the first message awaiting an ack
        entry.bseq = self._bseq
        self._sent.append(entry)
        self.counters.published += 1
        msg = entry.msg
        op = _OP_START if self._bseq == 1 else _OP_APPEND
        self._out.append(hpub(msg.subject, self._reply(op), msg.headers, msg.payload))
        self._last_subject = msg.subject
        if self._bseq >= defaults.PUBLISH_BATCH_MESSAGES:
            self._commit()

    def _open_batch(self) -> None:
        self._batch = uuid.uuid4().hex
        self._reply_head = (
            f"{self._inbox}.{self._batch}.{defaults.PUBLISH_BATCH_FLOW}.fail.".encode()
        )
        self._bseq = self._backed = 0
        self._started = self._closing = False
        self._flow = defaults.PUBLISH_BATCH_FLOW

    def _reply(self, op: int) -> bytes:
        return b"%b%d.%d.$FI" % (self._reply_head, self._bseq, op)

    def _commit(self) -> None:
        """End the open batch with a message that is not stored; its PubAck acks the rest."""
        if not self._batch or self._closing or not self._started:
            return
        self._bseq += 1
        self._closing = True
        if not self._sent:
            self._acked_at = time.monotonic()
        self._out.append(hpub(self._last_subject, self._reply(_OP_COMMIT_EOB), _EMPTY, b""))

    async def _flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            await write(self._nc, data)

    async def _on_ack(self, reply: Msg) -> None:
        """One answer about the open batch: acks move the window; anything else drops it."""
        parts = reply.subject.rsplit(".", 6)
        if len(parts) != 7 or parts[1] != self._batch:
            return  # about a batch already dropped or committed
        doc = _ack_doc(reply)
        if doc is None:
            # A status-only answer: 503 no responders while the stream has no leader.
            self._drop_batch(f"status {(reply.headers or {}).get('Status', '?')} answer")
            return
        kind = doc.get("type")
        seq = doc.get("seq")
        if "error" in doc or kind == "err":
            self._drop_batch(_error_text(doc.get("error")))
            return
        self._acked_at = time.monotonic()
        if kind == "ack" and isinstance(seq, int) and isinstance(doc.get("msgs"), int):
            # Messages 1..seq of the batch are stored; the next ack comes after "msgs" more.
            self._started = True
            self._flow = max(1, doc["msgs"])
            self._acknowledge(seq)
        elif kind is None and isinstance(seq, int) and isinstance(doc.get("count"), int):
            # The commit's PubAck: the batch's "count" messages are stored, the last at "seq"
            # (0 when every one of them was a duplicate).
            self.max_ack_seq = max(self.max_ack_seq, seq)
            self._acknowledge(doc["count"])
            if self._sent:
                self._drop_batch(f"the stream ended the batch after {doc['count']} messages")
                return
            self.counters.batches += 1
            self._batch = ""
        else:
            # A gap: the leader lost messages of the batch and abandoned it ("fail" mode).
            self._drop_batch(f"answer {reply.data[:200]!r}")
            return
        self._backoff = defaults.PUBLISH_BACKOFF_INITIAL_S
        self._room.set()

    def _acknowledge(self, upto: int) -> None:
        """Messages of the open batch at places up to ``upto`` are stored."""
        if upto <= self._backed:
            return
        self._backed = upto
        now = self._acked_at = time.monotonic()
        last = None
        done = False
        while self._sent and self._sent[0].bseq <= upto:
            last = self._sent.popleft()
            state = last.chunk
            state.pending -= 1
            done = done or (state.pending == 0 and state.sent_all)
            self.counters.acks += 1
        if last is not None and now - last.sent_at > self._slowest:
            self._slowest = now - last.sent_at
        if done:
            self._advance()

    def _drop_batch(self, why: str | None) -> None:
        """Forget the open batch; what it did not acknowledge is sent again after a back-off.

        A message it may still store later is a duplicate of its re-send: the same id.
        ``why`` is the stream's answer that ended it (None: silence).
        """
        if why is not None:
            self.counters.errors += 1
            if self._backoff == defaults.PUBLISH_BACKOFF_INITIAL_S:  # the first of a run
                log.warning("batch dropped (%s): its %d unacked go again", why, len(self._sent))
        self._sent.extend(self._retry)
        self._retry, self._sent = self._sent, collections.deque()
        self._batch = ""
        self._paused_until = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, defaults.PUBLISH_BACKOFF_CAP_S)
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
        """End back-offs, commit a batch whose tail waits, drop a silent one; save the cursor."""
        while True:
            await asyncio.sleep(defaults.PUBLISH_CURSOR_INTERVAL_S)
            now = time.monotonic()
            if self._paused_until and now >= self._paused_until:
                self._paused_until = 0.0
                self._room.set()
            if not self._paused_until and self._nc.is_connected:
                # nats-py keeps what was written while disconnected and sends it on reconnect:
                # no timeouts meanwhile, or re-sends would only pile up in its buffer.
                self._check_batch(now)
                await self._flush()
            if self._dirty:
                await self._save()

    def _check_batch(self, now: float) -> None:
        # Flow acks come every few hundred messages: when everything durable is sent and the
        # oldest message has waited a whole interval, commit to have the rest acknowledged
        # (a slow feed would otherwise wait for messages yet to be recorded); the next
        # message opens a new batch.
        caught_up = self.follower.next_lsn > self.durable_lsn and not self._retry
        waited = self._sent and now - self._sent[0].sent_at > defaults.PUBLISH_CURSOR_INTERVAL_S
        if caught_up and waited:
            self._commit()
        if not (self._sent or self._closing):
            return
        # A stream that took long to ack lately gets as long again before we call it silent:
        # a server fsyncing each message on a busy disk acks a backlog late, not never.
        self._slowest *= defaults.PUBLISH_ACK_LATENCY_DECAY
        if now - self._acked_at > max(self._ack_timeout, 2 * self._slowest):
            log.warning("no ack for %d publishes: sending them again", len(self._sent))
            self._drop_batch(None)

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
        """At stop: commit the open batch and give acks a bounded time (the timer re-sends)."""
        deadline = time.monotonic() + defaults.PUBLISH_DRAIN_TIMEOUT_S
        while self.in_flight and time.monotonic() < deadline:
            self._send_retries()
            self._commit()
            await self._flush()
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
        return len(self._sent) + len(self._retry)


_OP_START, _OP_APPEND, _OP_COMMIT_EOB = 0, 1, 3  # ADR-50 fast-ingest operations
_EMPTY = header_block(b"", b"")  # the commit message carries no headers and is not stored


def _error_text(error: Any) -> str:
    """An API error's description and code, for a log line."""
    if isinstance(error, dict):
        return f"{error.get('description', 'error')} ({error.get('err_code', '?')})"
    return "error"


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
