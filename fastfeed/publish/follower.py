"""Durable journal records in, messages to publish out: the publisher's lock-free reader.

Only records a power cut cannot take back are published. The writer's durable LSN lives in its
memory, but its commit step also stores it, after each sync returned, as the *durable mark* in
the current segment's header (docs/architecture.md, on-disk format): every record at or below
the newest mark was synced. Reading that mark through a read-only mapping gives this process
a lower bound of the writer's durable LSN with no change to the recorder and no extra syscall
on its hot path. Records go through the recorder's own ``Pipeline``, so what is published is
exactly what SQLite stores: duplicates dropped, epochs counted, gap changes derived.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fastfeed.derive.pipeline import Pipeline
from fastfeed.derive.streams import Gap
from fastfeed.journal import crc32c, read_journal
from fastfeed.publish import subjects as s
from fastfeed.publish.wire import header_block
from fastfeed.store import MessageRow
from fastfeed.venues import adapter_for

__all__ = ["Chunk", "Follower", "Outgoing"]

log = logging.getLogger("fastfeed.publish.follower")


@dataclass(slots=True)
class Outgoing:
    """One message to publish: subject, the header section ready to send, payload and id."""

    subject: bytes
    headers: bytes
    payload: bytes
    msg_id: str


class _Stream:
    """What every message of one stream shares, escaped and encoded once."""

    __slots__ = ("id", "message_fixed", "subject", "tokens")

    def __init__(self, prefix: str, venue: str, channel: str, symbol: str) -> None:
        self.tokens = (s.escape(venue), s.escape(channel), s.escape(symbol))
        self.subject = s.subject(prefix, venue, channel, symbol).encode()
        self.id = s.stream_id(venue, channel, symbol)
        self.message_fixed = self.fixed(s.KIND_MESSAGE)

    def fixed(self, kind: str) -> bytes:
        venue, channel, symbol = self.tokens
        return (
            f"{s.HDR_KIND}: {kind}\r\n{s.HDR_VENUE}: {venue}\r\n"
            f"{s.HDR_CHANNEL}: {channel}\r\n{s.HDR_SYMBOL}: {symbol}\r\n"
        ).encode()


@dataclass(slots=True)
class Chunk:
    """The messages derived from journal records up to ``end_lsn``, and the tracker there."""

    end_lsn: int
    messages: list[Outgoing]
    tracker_state: dict[str, Any] | None


class Follower:
    """Reads durable records from ``next_lsn`` on and turns them into ``Chunk``s."""

    def __init__(
        self,
        journal_dir: Path,
        venue: str,
        prefix: str,
        *,
        next_lsn: int = 1,
        tracker_state: dict[str, Any] | None = None,
    ) -> None:
        self._dir = journal_dir
        self.venue = venue
        self._prefix = prefix
        self.next_lsn = next_lsn
        self.pipeline = Pipeline(venue, adapter_for(venue))
        self.pipeline.restore(tracker_state, {}, next_lsn - 1)
        self.skipped = 0  # records retention deleted before they were read
        self._streams: dict[tuple[str, str], _Stream] = {}

    def poll(self, durable: int, max_records: int) -> Chunk | None:
        """Up to ``max_records`` records after the last poll and at most ``durable``."""
        if durable < self.next_lsn:
            return None
        upto = min(durable, self.next_lsn + max_records - 1)
        last = 0
        for record in read_journal(self._dir, self.next_lsn, upto):
            if last == 0 and record.lsn != self.next_lsn:
                self.skipped += record.lsn - self.next_lsn
                log.error(
                    "journal records %d..%d were deleted before they were published",
                    self.next_lsn,
                    record.lsn - 1,
                )
            self.pipeline.feed(
                record.lsn, record.kind, record.recv_ns, record.payload, record.flags, record.stream
            )
            last = record.lsn
        if last == 0:
            return None
        self.next_lsn = last + 1
        batch = self.pipeline.cut()
        self.pipeline.take_actions()  # dropped: only the recorder asks the venue to backfill
        if batch is None:
            return Chunk(last, [], None)
        out = [self._message(row) for row in batch.messages]
        out.extend(self._gap(gap, last) for gap in batch.gaps)
        return Chunk(batch.applied_lsn, out, batch.tracker_state)

    def _stream(self, channel: str, symbol: str) -> _Stream:
        stream = self._streams.get((channel, symbol))
        if stream is None:
            stream = self._streams[channel, symbol] = _Stream(
                self._prefix, self.venue, channel, symbol
            )
        return stream

    def _message(self, row: MessageRow) -> Outgoing:
        stream = self._stream(row.channel, row.symbol)
        msg_id = s.message_id_in(stream.id, row.seq, crc32c(row.frame), len(row.frame))
        fields = (
            f"{s.HDR_MSG_ID}: {msg_id}\r\n{s.HDR_EPOCH}: {row.epoch}\r\n"
            f"{s.HDR_RECV_NS}: {row.recv_ns}\r\n{s.HDR_LSN}: {row.lsn}\r\n"
        )
        if row.seq is not None:
            fields += f"{s.HDR_SEQ}: {row.seq}\r\n"
        if row.binary:
            fields += f"{s.HDR_BINARY}: 1\r\n"
        headers = header_block(stream.message_fixed, fields.encode())
        return Outgoing(stream.subject, headers, row.frame, msg_id)

    def _gap(self, gap: Gap, lsn: int) -> Outgoing:
        stream = self._stream(gap.key.channel, gap.key.symbol)
        msg_id = s.gap_id(self.venue, gap)
        payload = orjson.dumps(
            {
                "epoch": gap.epoch,
                "from_seq": gap.from_seq,
                "to_seq": gap.to_seq,
                "from_ns": gap.from_ns,
                "to_ns": gap.to_ns,
                "state": gap.state.value,
                "reason": gap.reason,
            }
        )
        fields = f"{s.HDR_MSG_ID}: {msg_id}\r\n{s.HDR_EPOCH}: {gap.epoch}\r\n{s.HDR_LSN}: {lsn}\r\n"
        headers = header_block(stream.fixed(s.KIND_GAP), fields.encode())
        return Outgoing(stream.subject, headers, payload, msg_id)
