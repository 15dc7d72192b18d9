"""Subjects, message ids and headers of published messages: pure functions, no I/O.

Subjects are ``<prefix>.<venue>.<channel>.<symbol>``. A NATS subject token may not hold ``.``,
``*``, ``>`` or whitespace (NATS docs, "Subject-Based Messaging: characters allowed"), and
symbols do (``AAPL.US``), so each token is escaped reversibly: every byte outside
``[A-Za-z0-9_-]`` becomes ``%XX`` (upper-case hex), ``%`` included.

The ``Nats-Msg-Id`` is computed from the message alone, so two collectors recording the same
venue stream give it the same id without talking to each other: ``venue``, ``channel``,
``symbol``, ``seq`` and the CRC32C of the exact frame (a venue restart that numbers a stream from
1 again sends other frames for the same seqs, so their ids differ). Without a seq the frame's
length joins the CRC. Why and what it costs: docs/scale-out.md.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from fastfeed.derive.streams import Gap

__all__ = [
    "HDR_BINARY",
    "HDR_CHANNEL",
    "HDR_EPOCH",
    "HDR_KIND",
    "HDR_LSN",
    "HDR_MSG_ID",
    "HDR_RECV_NS",
    "HDR_SEQ",
    "HDR_SYMBOL",
    "HDR_VENUE",
    "KIND_GAP",
    "KIND_MESSAGE",
    "SubjectParts",
    "escape",
    "gap_id",
    "message_id",
    "message_id_in",
    "parse_subject",
    "stream_id",
    "subject",
    "unescape",
]

HDR_MSG_ID = "Nats-Msg-Id"  # JetStream de-duplicates on it within the stream's duplicate_window
# Venue, channel and symbol headers hold the escaped tokens, as in the subject: a header value
# must not hold CR or LF, and a venue's symbol could.
HDR_VENUE = "Fastfeed-Venue"
HDR_CHANNEL = "Fastfeed-Channel"
HDR_SYMBOL = "Fastfeed-Symbol"
HDR_EPOCH = "Fastfeed-Epoch"
HDR_SEQ = "Fastfeed-Seq"  # absent for a stream without sequence numbers
HDR_RECV_NS = "Fastfeed-Recv-Ns"
HDR_LSN = "Fastfeed-Lsn"  # the collector's journal LSN (meaningful per collector only)
HDR_KIND = "Fastfeed-Kind"
HDR_BINARY = "Fastfeed-Binary"  # "1" for a binary WebSocket frame

KIND_MESSAGE = "message"  # payload: the exact frame
KIND_GAP = "gap"  # payload: one gap-ledger change as JSON (docs/scale-out.md)

_SAFE = re.compile(r"[A-Za-z0-9_-]*")
_ESCAPED = re.compile(r"%([0-9A-F]{2})")


class SubjectParts(NamedTuple):
    """The unescaped tokens of a published subject."""

    venue: str
    channel: str
    symbol: str


def escape(token: str) -> str:
    """``token`` as one subject token: bytes outside [A-Za-z0-9_-] as %XX (reversible)."""
    if _SAFE.fullmatch(token) and token:
        return token
    return "".join(
        chr(b) if chr(b).isascii() and _SAFE.fullmatch(chr(b)) else f"%{b:02X}"
        for b in token.encode()
    )


def unescape(token: str) -> str:
    """The inverse of ``escape``."""
    if "%" not in token:
        return token
    raw = bytearray()
    pos = 0
    for m in _ESCAPED.finditer(token):
        raw += token[pos : m.start()].encode()
        raw.append(int(m.group(1), 16))
        pos = m.end()
    raw += token[pos:].encode()
    return raw.decode(errors="replace")


def subject(prefix: str, venue: str, channel: str, symbol: str) -> str:
    """The subject one stream's messages and gap changes are published on."""
    return f"{prefix}.{escape(venue)}.{escape(channel)}.{escape(symbol)}"


def parse_subject(text: str) -> SubjectParts | None:
    """The venue, channel and symbol of ``<prefix>.<venue>.<channel>.<symbol>``, else None."""
    tokens = text.split(".")
    if len(tokens) != 4:
        return None
    return SubjectParts(unescape(tokens[1]), unescape(tokens[2]), unescape(tokens[3]))


def stream_id(venue: str, channel: str, symbol: str) -> str:
    """The leading part of a stream's message ids: its escaped venue, channel and symbol."""
    return f"{escape(venue)}.{escape(channel)}.{escape(symbol)}"


def message_id(venue: str, channel: str, symbol: str, seq: int | None, crc: int, size: int) -> str:
    """The collector-independent ``Nats-Msg-Id`` of one message (see the module docstring)."""
    return message_id_in(stream_id(venue, channel, symbol), seq, crc, size)


def message_id_in(stream: str, seq: int | None, crc: int, size: int) -> str:
    """``message_id`` with the stream's part (``stream_id``) already made."""
    if seq is None:
        return f"{stream}.-.{crc:08x}.{size}"
    return f"{stream}.{seq}.{crc:08x}"


def gap_id(venue: str, gap: Gap) -> str:
    """The ``Nats-Msg-Id`` of a gap-ledger change: what is missing and its state.

    Built from the gap's content, not its ledger id (each collector numbers its own ledger), so
    two collectors that see the same hole end the same way publish it once.
    """
    where = (
        f"{gap.from_seq}-{gap.to_seq}"
        if gap.from_seq is not None
        else f"t{gap.from_ns}-{gap.to_ns}"
    )
    stream = stream_id(venue, gap.key.channel, gap.key.symbol)
    return f"gap.{stream}.{gap.epoch}.{where}.{gap.state}"
