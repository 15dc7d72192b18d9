"""``fastfeed export --from-nats URL --stream MD``: the local export's rows, read from JetStream.

Subjects are read one at a time in (venue, channel, symbol) order, each from its first message
to the stream's last sequence at the start, through the same row writers as the local export,
so both print the same bytes for the same messages. Within a subject a pipelined window can
have been stored out of order (a leader change mid-window), and a second collector's copy of a
message can be stored when it came after the duplicate window: a reorder buffer of
EXPORT_NATS_REORDER messages sorts by (epoch, seq) as the local export does and drops a
message whose (epoch, seq) or ``Nats-Msg-Id`` was already written.

The reading runs on its own thread with its own event loop and hands rows over through a
bounded queue, because the writers pull rows from a plain iterator.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import queue
import threading
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastfeed import defaults
from fastfeed.errors import ConfigError, FastfeedError
from fastfeed.publish import subjects as s
from fastfeed.publish.app import connect, require_nats, server_list
from fastfeed.publish.cursor import check_stream_name
from fastfeed.publish.reading import StreamReadError, read_stream, stream_info
from fastfeed.store import MessageRow
from fastfeed.tools.export import ExportFilter, check_args, write_rows

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ["main", "rows_in_order"]

_QUEUE_BATCHES = 8  # row batches in flight between the reading thread and the writer
_BATCH_ROWS = defaults.EXPORT_CHUNK_ROWS
_DONE = None


def main(args: argparse.Namespace) -> int:
    """Run the export against the stream; returns the exit code."""
    require_nats()
    servers = server_list(args.from_nats)
    check_stream_name(args.stream)
    flt, channel = check_args(args)
    selected = ExportFilter(channel, flt.symbol, flt.from_ns, flt.to_ns)
    handoff: queue.Queue[list[MessageRow] | BaseException | None] = queue.Queue(_QUEUE_BATCHES)
    stop = threading.Event()
    reader = threading.Thread(
        target=_read_thread, args=(servers, args.stream, selected, handoff, stop), daemon=True
    )
    reader.start()
    try:
        write_rows(args, _drain(handoff))
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                handoff.get_nowait()
            except queue.Empty:
                reader.join(0.05)
    return 0


def _drain(handoff: queue.Queue[list[MessageRow] | BaseException | None]) -> Iterator[MessageRow]:
    while True:
        item = handoff.get()
        if item is _DONE:
            return
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, list)
        yield from item


def _read_thread(
    servers: list[str],
    stream: str,
    flt: ExportFilter,
    handoff: queue.Queue[list[MessageRow] | BaseException | None],
    stop: threading.Event,
) -> None:
    from nats.errors import Error as NatsError

    try:
        asyncio.run(_read(servers, stream, flt, handoff, stop))
        handoff.put(_DONE)
    except NatsError as exc:  # one line, by its type: a client error's text may name servers
        handoff.put(StreamReadError(f"reading stream {stream} failed: {type(exc).__name__}"))
    except BaseException as exc:  # handed to the writer's thread, which raises it
        handoff.put(exc)


async def _read(
    servers: list[str],
    stream: str,
    flt: ExportFilter,
    handoff: queue.Queue[list[MessageRow] | BaseException | None],
    stop: threading.Event,
) -> None:
    from nats.js.errors import NotFoundError

    nc = await connect(servers)
    try:
        js = nc.jetstream(timeout=defaults.PUBLISH_CONNECT_TIMEOUT_S)
        try:
            info = await stream_info(js, stream, subjects_filter=">")
        except StreamReadError as exc:
            raise FastfeedError(str(exc)) from None
        except NotFoundError:
            raise ConfigError(f"no JetStream stream {stream!r} at {servers[0]}") from None
        last = info.state.last_seq
        chosen = sorted(
            (parts, subject)
            for subject in (info.state.subjects or {})
            if (parts := s.parse_subject(subject)) is not None
            and (flt.channel is None or parts.channel == flt.channel)
            and (flt.symbol is None or parts.symbol == flt.symbol)
        )
        batch: list[MessageRow] = []
        for _, subject in chosen:
            try:
                async for row in rows_in_order(read_stream(js, stream, subject, 1, last)):
                    if flt.keep(row):
                        batch.append(row)
                    if len(batch) >= _BATCH_ROWS:
                        await asyncio.to_thread(handoff.put, batch)
                        batch = []
                    if stop.is_set():
                        return
            except StreamReadError as exc:
                raise FastfeedError(str(exc)) from None
        if batch:
            await asyncio.to_thread(handoff.put, batch)
    finally:
        await nc.close()


def _row(msg: Msg) -> tuple[tuple[int, bool, int, int], str, MessageRow] | None:
    """(sort key, Msg-Id, row) of a published message; None for a gap change or a stranger."""
    h = msg.headers or {}
    if h.get(s.HDR_KIND) != s.KIND_MESSAGE:
        return None
    try:
        seq = int(h[s.HDR_SEQ]) if s.HDR_SEQ in h else None
        epoch, lsn, recv_ns = int(h[s.HDR_EPOCH]), int(h[s.HDR_LSN]), int(h[s.HDR_RECV_NS])
        row = MessageRow(
            s.unescape(h[s.HDR_VENUE]),
            s.unescape(h[s.HDR_CHANNEL]),
            s.unescape(h[s.HDR_SYMBOL]),
            epoch,
            seq,
            recv_ns,
            lsn,
            msg.data,
            h.get(s.HDR_BINARY) == "1",
        )
        msg_id = h[s.HDR_MSG_ID]
    except (KeyError, ValueError):
        return None  # not one of ours: published by something else onto our subjects
    # The local export's order: epoch, sequenced before unsequenced, seq, then LSN.
    return (epoch, seq is None, seq or 0, lsn), msg_id, row


async def rows_in_order(messages: Any, window: int = defaults.EXPORT_NATS_REORDER) -> Any:
    """One subject's rows sorted within ``window`` and without repeats (see module docstring)."""
    heap: list[tuple[tuple[int, bool, int, int], int, str, MessageRow]] = []
    seen_ids: set[str] = set()
    recent: deque[str] = deque()
    last_key: tuple[int, bool, int, int] | None = None
    n = 0
    async for msg in messages:
        parsed = _row(msg)
        if parsed is None:
            continue
        key, msg_id, row = parsed
        if msg_id in seen_ids:
            continue
        seen_ids.add(msg_id)
        recent.append(msg_id)
        if len(recent) > 2 * window:
            seen_ids.discard(recent.popleft())
        n += 1
        heapq.heappush(heap, (key, n, msg_id, row))
        if len(heap) > window:
            out = heapq.heappop(heap)
            if _fresh(out[0], last_key):
                last_key = out[0]
                yield out[3]
    while heap:
        out = heapq.heappop(heap)
        if _fresh(out[0], last_key):
            last_key = out[0]
            yield out[3]


def _fresh(key: tuple[int, bool, int, int], last: tuple[int, bool, int, int] | None) -> bool:
    """Not a repeat of the (epoch, seq) just written (unsequenced rows never repeat by key)."""
    if last is None or key[1]:
        return True
    return key[:3] != last[:3]
