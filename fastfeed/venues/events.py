"""The events a venue adapter turns frames into: the only vocabulary the pipeline reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Event",
    "Malformed",
    "Message",
    "Pong",
    "Snapshot",
    "StreamRange",
    "Subscribed",
    "Unsubscribed",
    "VenueRejected",
    "new_message",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One market-data push of a stream: ``data`` is the venue's payload object as parsed.

    ``seq`` is the per-stream sequence number (None on venues without the sequence extension),
    ``ts_ms`` the venue's timestamp in milliseconds, ``sent_ns`` an optional send-time stamp
    some senders (the benchmark simulator) add. ``first_seq`` is set by venues numbering
    updates rather than pushes: the push covers ``first_seq..seq`` (Binance spot ``U..u``,
    futures ``pu + 1..u``), and None means it covers ``seq`` alone.
    """

    channel: str
    symbol: str
    seq: int | None
    ts_ms: int | None
    data: dict[str, Any]
    sent_ns: int | None = None
    first_seq: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A full state of one stream as of update ``seq``, fetched apart from the feed (REST).

    Binance: the ``/api/v3/depth`` or ``/fapi/v1/depth`` body, ``seq`` its ``lastUpdateId``.
    """

    channel: str
    symbol: str
    seq: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamRange:
    """What the venue holds of one stream at subscribe time: it sends from ``first_seq``."""

    first_seq: int
    head_seq: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A subscribe acknowledged; ``streams`` is None when the venue has no sequence numbers."""

    channel: str | None
    symbols: tuple[str, ...]
    streams: dict[str, StreamRange] | None


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """An unsubscribe acknowledged."""

    channel: str | None
    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to our heartbeat ping."""


@dataclass(frozen=True, slots=True)
class VenueRejected:
    """The venue refused a command; ``fatal`` means reconnecting cannot help (invalid key)."""

    cmd: str
    code: int
    message: str
    channel: str | None
    symbols: tuple[str, ...]
    fatal: bool


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame the adapter could not read; ``reason`` says what was expected and where."""

    reason: str


# The frozen dataclass __init__ sets each field through object.__setattr__ (about 750 ns for
# Message on CPython 3.11); writing the slots through their descriptors builds the same frozen
# object in about 430 ns. Message is the one event made per pushed frame, so parse uses this.
_new_object = object.__new__
_slots = vars(Message)  # the member descriptors of the slots
_set_channel = _slots["channel"].__set__
_set_symbol = _slots["symbol"].__set__
_set_seq = _slots["seq"].__set__
_set_ts_ms = _slots["ts_ms"].__set__
_set_data = _slots["data"].__set__
_set_sent_ns = _slots["sent_ns"].__set__
_set_first_seq = _slots["first_seq"].__set__


def new_message(
    channel: str,
    symbol: str,
    seq: int | None,
    ts_ms: int | None,
    data: dict[str, Any],
    sent_ns: int | None,
    first_seq: int | None = None,
) -> Message:
    """Build a Message equal to ``Message(...)`` at about half the cost (the hot path)."""
    msg: Message = _new_object(Message)
    _set_channel(msg, channel)
    _set_symbol(msg, symbol)
    _set_seq(msg, seq)
    _set_ts_ms(msg, ts_ms)
    _set_data(msg, data)
    _set_sent_ns(msg, sent_ns)
    _set_first_seq(msg, first_seq)
    return msg


Event = Message | Snapshot | Subscribed | Unsubscribed | Pong | VenueRejected | Malformed
