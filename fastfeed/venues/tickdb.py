"""TickDB's WebSocket protocol plus the sequence extension: frames in, events out, no I/O.

The protocol (TickDB realtime API, ``/v1/realtime``):

* connect with ``?api_key=KEY``; a bad key gets ``{"cmd":"error","code":1001,...}`` and a close;
* client commands ``{"cmd":"subscribe"|"unsubscribe","data":{"channel":C,"symbols":[...]}}`` and
  the heartbeat ``{"cmd":"ping"}``, answered by ``{"cmd":"pong"}``;
* pushes ``{"cmd":"depth"|"trade"|"ticker","data":{"symbol":S,...,"timestamp":MS}}``;
* errors ``{"cmd":"error"|<command>,"code":N,"message":M}``: 1001/4001 invalid key, 2001 bad
  request, 2002 unknown channel or symbol, 3001 rate limit.

The sequence extension adds a top-level ``"seq"`` (per channel+symbol, from 1, +1 per push),
``"resume":{SYMBOL: next_seq}`` in a subscribe's data, and an ack
``{"cmd":"subscribe","code":0,"data":{...,"streams":{SYMBOL:{"first_seq":F,"head_seq":H}}}}``.
Plain TickDB acks without ``streams`` (or not at all). A push may carry ``"sent_ns"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from fastfeed.venues.events import (
    Event,
    Malformed,
    Pong,
    StreamRange,
    Subscribed,
    Unsubscribed,
    VenueRejected,
    new_message,
)
from fastfeed.venues.shapes import json_kind as _kind

__all__ = [
    "CHANNELS",
    "CODE_BAD_REQUEST",
    "CODE_INVALID_KEY",
    "CODE_RATE_LIMITED",
    "CODE_UNAUTHORIZED",
    "CODE_UNKNOWN_NAME",
    "FATAL_CODES",
    "MAX_SYMBOL_LEN",
    "TickDBAdapter",
    "validate_symbol",
]

CHANNELS = ("depth", "trade", "ticker")
# Error codes (the module docstring); the simulator answers with the same ones.
CODE_INVALID_KEY = 1001  # the API key in the URL is wrong
CODE_UNAUTHORIZED = 4001  # the key is not allowed this feed
CODE_BAD_REQUEST = 2001  # a command that is not what the protocol expects
CODE_UNKNOWN_NAME = 2002  # an unknown channel or symbol
CODE_RATE_LIMITED = 3001  # too many commands: this one was dropped
FATAL_CODES = frozenset({CODE_INVALID_KEY, CODE_UNAUTHORIZED})  # reconnecting cannot help
MAX_SYMBOL_LEN = 32
_SYMBOL_RE = re.compile(r"[A-Za-z0-9._:/-]+")
# Numbers end up in SQLite, whose INTEGER is signed 64-bit: a larger one could never be stored
# (sqlite3 raises OverflowError), so it is malformed here rather than a crash of the snapshotter.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_KNOWN_SYMBOLS_MAX = 4096  # cache of symbols already validated (bounded against a hostile feed)
_REDACTED = "***"
_PING = orjson.dumps({"cmd": "ping"})
_PONG = Pong()


def validate_symbol(symbol: str) -> str | None:
    """Say what is wrong with a symbol (None if it is fine): shared by parse and the CLI."""
    if not symbol:
        return "empty symbol"
    if len(symbol) > MAX_SYMBOL_LEN:
        return f"longer than {MAX_SYMBOL_LEN} characters"
    if _SYMBOL_RE.fullmatch(symbol) is None:
        return "expected only letters, digits and . _ : / -"
    return None


class TickDBAdapter:
    """Parses TickDB frames into events and builds the commands to send; no I/O, no clock."""

    name = "tickdb"
    replays = True  # the sequence extension's resume backfills gaps
    rejection_hint = "check TICKDB_API_KEY / --api-key-file"
    book_channels = frozenset({"depth"})  # each depth push is a full top-N book

    def __init__(self) -> None:
        self._known_symbols: set[str] = set()

    # -- inbound -------------------------------------------------------------------------------
    def parse(self, frame: bytes | memoryview, recv_ns: int, *, binary: bool = False) -> Event:
        """Turn one frame into an event; never raises (unreadable input is ``Malformed``)."""
        if binary:
            return Malformed("expected a text frame, got a binary frame")
        try:
            doc = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            return Malformed(f"expected JSON at $: {exc}")
        if type(doc) is not dict:
            return Malformed(f"expected object at $, got {_kind(doc)}")
        cmd = doc.get("cmd")
        if cmd in CHANNELS and "code" not in doc:
            return self._push(cmd, doc)
        if cmd == "pong":
            return _PONG
        if type(cmd) is not str:
            return Malformed(f"expected str at $.cmd, got {_kind(cmd)}")
        if "code" in doc:
            return self._reply(cmd, doc)
        return Malformed(f"expected a push, pong, ack or error at $.cmd, got {cmd[:40]!r}")

    def _push(self, channel: str, doc: dict[str, Any]) -> Event:
        data = doc.get("data")
        if type(data) is not dict:
            return Malformed(f"expected object at $.data, got {_kind(data)}")
        symbol = data.get("symbol")
        if type(symbol) is not str:
            return Malformed(f"expected str at $.data.symbol, got {_kind(symbol)}")
        if symbol not in self._known_symbols:
            problem = validate_symbol(symbol)
            if problem is not None:
                return Malformed(f"bad symbol {symbol[:40]!r} at $.data.symbol: {problem}")
            if len(self._known_symbols) < _KNOWN_SYMBOLS_MAX:
                self._known_symbols.add(symbol)
        seq = doc.get("seq")
        if seq is not None and (type(seq) is not int or not 1 <= seq <= _INT64_MAX):
            return Malformed(f"expected positive int64 at $.seq, got {_kind(seq)}")
        ts_ms = data.get("timestamp")
        if type(ts_ms) is not int or not _INT64_MIN <= ts_ms <= _INT64_MAX:
            return Malformed(f"expected int64 at $.data.timestamp, got {_kind(ts_ms)}")
        sent_ns = doc.get("sent_ns")
        if sent_ns is not None and (type(sent_ns) is not int or not 0 <= sent_ns <= _INT64_MAX):
            return Malformed(f"expected non-negative int64 at $.sent_ns, got {_kind(sent_ns)}")
        problem = _check_depth(data) if channel == "depth" else _check_fields(channel, data)
        if problem is not None:
            return Malformed(problem)
        return new_message(channel, symbol, seq, ts_ms, data, sent_ns)

    def _reply(self, cmd: str, doc: dict[str, Any]) -> Event:
        code = doc.get("code")
        if type(code) is not int:
            return Malformed(f"expected int at $.code, got {_kind(code)}")
        raw = doc.get("data")
        data: dict[str, Any] = raw if type(raw) is dict else {}
        if code != 0:
            # A refusal is never dropped for its shape: a fatal code must stop the recorder even
            # if the rest of the frame is odd, so channel, symbols and message are best effort.
            message = doc.get("message")
            channel = data.get("channel")
            symbols = data.get("symbols")
            return VenueRejected(
                cmd,
                code,
                message if type(message) is str else "",
                channel if channel in CHANNELS else None,
                tuple(s for s in symbols if type(s) is str and validate_symbol(s) is None)
                if type(symbols) is list
                else (),
                code in FATAL_CODES,
            )
        if raw is not None and type(raw) is not dict:
            return Malformed(f"expected object at $.data, got {_kind(raw)}")
        channel = data.get("channel")
        if channel is not None and channel not in CHANNELS:
            return Malformed(f"expected one of {', '.join(CHANNELS)} at $.data.channel")
        symbols = data.get("symbols", [])
        if type(symbols) is not list:
            return Malformed(f"expected array at $.data.symbols, got {_kind(symbols)}")
        for i, symbol in enumerate(symbols):
            if type(symbol) is not str or validate_symbol(symbol) is not None:
                return Malformed(f"expected a valid symbol at $.data.symbols[{i}]")
        if cmd == "subscribe":
            return _subscribed(channel, tuple(symbols), data.get("streams"))
        if cmd == "unsubscribe":
            return Unsubscribed(channel, tuple(symbols))
        if cmd == "ping":
            return _PONG
        return Malformed(
            f"expected subscribe, unsubscribe or ping at $.cmd for code 0, got {cmd[:40]!r}"
        )

    def parse_snapshot(self, channel: str, symbol: str, body: bytes) -> Event:
        """TickDB has no REST snapshots: a REST record in its journal is not its own."""
        return Malformed("TickDB has no REST snapshots")

    # -- outbound ------------------------------------------------------------------------------
    def subscribe(
        self, channel: str, symbols: Sequence[str], resume: Mapping[str, int] | None = None
    ) -> bytes:
        """The subscribe command; ``resume`` maps a symbol to the next seq wanted."""
        data: dict[str, Any] = {"channel": channel, "symbols": list(symbols)}
        if resume:
            data["resume"] = dict(resume)
        return orjson.dumps({"cmd": "subscribe", "data": data})

    def unsubscribe(self, channel: str, symbols: Sequence[str]) -> bytes:
        """The unsubscribe command."""
        return orjson.dumps(
            {"cmd": "unsubscribe", "data": {"channel": channel, "symbols": list(symbols)}}
        )

    def ping(self) -> bytes:
        """The application-level heartbeat, answered by ``{"cmd":"pong"}``."""
        return _PING

    def url(self, endpoint: str, api_key: str | None) -> str:
        """The URL to connect to: the endpoint with ``api_key`` set (unchanged without a key)."""
        if api_key is None:
            return endpoint
        parts = urlsplit(endpoint)
        query = [
            (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "api_key"
        ]
        query.append(("api_key", api_key))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def redacted_url(self, endpoint: str) -> str:
        """The URL as ``url`` builds it, safe to log: key and any password replaced by ***."""
        parts = urlsplit(endpoint)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:{_REDACTED}@{netloc.rpartition('@')[2]}"
        query = [
            (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "api_key"
        ]
        tail = f"api_key={_REDACTED}"
        text = f"{urlencode(query)}&{tail}" if query else tail
        return urlunsplit(parts._replace(netloc=netloc, query=text))


def _subscribed(channel: str | None, symbols: tuple[str, ...], raw: object) -> Event:
    """A successful subscribe ack; with the sequence extension it carries each stream's range."""
    if raw is None:
        return Subscribed(channel, symbols, None)
    if type(raw) is not dict:
        return Malformed(f"expected object at $.data.streams, got {_kind(raw)}")
    if channel is None:
        return Malformed("expected a channel at $.data.channel when $.data.streams is given")
    streams: dict[str, StreamRange] = {}
    for symbol, rng in raw.items():
        where = f"$.data.streams[{symbol[:40]!r}]"
        if validate_symbol(symbol) is not None:
            return Malformed(f"expected a valid symbol as key at {where}")
        if type(rng) is not dict:
            return Malformed(f"expected object at {where}, got {_kind(rng)}")
        first, head = rng.get("first_seq"), rng.get("head_seq")
        if type(first) is not int or not 1 <= first <= _INT64_MAX:
            return Malformed(f"expected positive int64 at {where}.first_seq, got {_kind(first)}")
        if type(head) is not int or not 0 <= head < _INT64_MAX:
            return Malformed(f"expected non-negative int64 at {where}.head_seq, got {_kind(head)}")
        streams[symbol] = StreamRange(first, head)
    return Subscribed(channel, symbols, streams)


# Fields each push must carry as strings, besides symbol and timestamp (TickDB realtime docs).
_STRING_FIELDS = {"trade": ("price", "quantity", "side"), "ticker": ("last", "volume")}


def _check_fields(channel: str, data: dict[str, Any]) -> str | None:
    for name in _STRING_FIELDS[channel]:
        value = data.get(name)
        if type(value) is not str:
            return f"expected str at $.data.{name}, got {_kind(value)}"
    return None


def _check_depth(data: dict[str, Any]) -> str | None:
    """A depth push is a full top-N book: ``bids`` and ``asks`` arrays of [price, size] strings."""
    # The hot path: one tight loop per side, the error text only built once a level fails.
    bids, asks = data.get("bids"), data.get("asks")
    if type(bids) is not list:
        return f"expected array at $.data.bids, got {_kind(bids)}"
    if type(asks) is not list:
        return f"expected array at $.data.asks, got {_kind(asks)}"
    for levels in (bids, asks):
        for level in levels:
            if (
                type(level) is not list
                or len(level) != 2
                or type(level[0]) is not str
                or type(level[1]) is not str
            ):
                side = "bids" if levels is bids else "asks"
                return f"expected [price, size] strings at $.data.{side}[{levels.index(level)}]"
    return None
