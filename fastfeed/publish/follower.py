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
from fastfeed.journal import JournalReader, JournalRecord, crc32c, read_journal
from fastfeed.publish import subjects as s
from fastfeed.publish.wire import header_block
from fastfeed.recorder._sink import Scanner, scanner_venues
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
        adapter = adapter_for(venue)
        # The recorder's C scanner makes a steady stream's frames rows without a JSON parse.
        scan = Scanner(adapter.name).key_seq if adapter.name in scanner_venues() else None
        self.pipeline = Pipeline(venue, adapter, scan=scan)
        self.pipeline.restore(tracker_state, {}, next_lsn - 1)
        self.skipped = 0  # records retention deleted before they were read
        self._streams: dict[tuple[str, str], _Stream] = {}
        # One reader for as long as the follower runs: it continues where it stopped, where a
        # new one would find its place by walking the segment's record headers through a
        # fresh mapping (page faults), which cost more per record than the reading itself.
        self._reader: JournalReader | None = None

    def poll(self, durable: int, max_records: int) -> Chunk | None:
        """Up to ``max_records`` records after the last poll and at most ``durable``."""
        if durable < self.next_lsn:
            return None
        records = self._read(max_records, durable)
        if not records:
            return None
        first, last = records[0].lsn, records[-1].lsn
        if first != self.next_lsn:
            self.skipped += first - self.next_lsn
            log.error(
                "journal records %d..%d were deleted before they were published",
                self.next_lsn,
                first - 1,
            )
        self.pipeline.feed_records(records)
        self.next_lsn = last + 1
        batch = self.pipeline.cut()
        self.pipeline.take_actions()  # dropped: only the recorder asks the venue to backfill
        if batch is None:
            return Chunk(last, [], None)
        out = self._messages(batch.messages)
        out.extend(self._gap(gap, last) for gap in batch.gaps)
        return Chunk(batch.applied_lsn, out, batch.tracker_state)

    def _read(self, limit: int, upto: int) -> list[JournalRecord]:
        """Up to ``limit`` records from ``next_lsn`` on, none past ``upto``, as far as the log
        goes now. Bounded by count, not by ``next_lsn + limit``: where retention deleted the
        records from ``next_lsn`` on, the oldest left may lie past any such LSN bound."""
        if self._reader is None:
            self._reader = read_journal(self._dir, self.next_lsn)
        records = self._reader.take(limit, upto)
        if self._reader.damage is not None:
            self.close()  # it stays stopped there: the next poll looks again, as after a repair
        return records

    def close(self) -> None:
        """Unmap the journal reader."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _stream(self, channel: str, symbol: str) -> _Stream:
        stream = self._streams.get((channel, symbol))
        if stream is None:
            stream = self._streams[channel, symbol] = _Stream(
                self._prefix, self.venue, channel, symbol
            )
        return stream

    def _messages(self, rows: list[MessageRow]) -> list[Outgoing]:
        """The rows as messages (one loop over unpacked tuples: this is paid per message)."""
        out = []
        streams = self._streams
        id_in = s.message_id_in
        for _venue, channel, symbol, epoch, seq, recv_ns, lsn, frame, binary in rows:
            stream = streams.get((channel, symbol)) or self._stream(channel, symbol)
            msg_id = id_in(stream.id, seq, crc32c(frame), len(frame))
            fields = (
                f"{s.HDR_MSG_ID}: {msg_id}\r\n{s.HDR_EPOCH}: {epoch}\r\n"
                f"{s.HDR_RECV_NS}: {recv_ns}\r\n{s.HDR_LSN}: {lsn}\r\n"
            )
            if seq is not None:
                fields += f"{s.HDR_SEQ}: {seq}\r\n"
            if binary:
                fields += f"{s.HDR_BINARY}: 1\r\n"
            headers = header_block(stream.message_fixed, fields.encode())
            out.append(Outgoing(stream.subject, headers, frame, msg_id))
        return out

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
