"""The journal payload of a REST response (record kind REST): what was asked, what came back.

Layout: one line of JSON head ``{"url","status","channel","symbol"}``, a newline, then the
response body exactly as received. The URL is the one requested, without credentials (venue
snapshots are public); the receive time is the record header's.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

__all__ = ["RestHead", "decode_rest", "encode_rest"]


class RestHead(NamedTuple):
    """What a REST record says besides its body."""

    url: str
    status: int
    channel: str
    symbol: str


def encode_rest(head: RestHead, body: bytes) -> bytes:
    """The record payload for one response."""
    return orjson.dumps(head._asdict()) + b"\n" + body


def decode_rest(payload: bytes) -> tuple[RestHead, bytes] | str:
    """The head and exact body of a REST record, or what is wrong with it."""
    line, sep, body = payload.partition(b"\n")
    if not sep:
        return "expected a JSON head line then the body"
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "expected a JSON head line then the body"
    if not isinstance(doc, dict):
        return "expected a JSON object as the head"
    url, status, channel, symbol = (doc.get(k) for k in RestHead._fields)
    if not (
        isinstance(url, str)
        and type(status) is int
        and isinstance(channel, str)
        and isinstance(symbol, str)
    ):
        return "expected url, status, channel and symbol in the head"
    return RestHead(url, status, channel, symbol), body
