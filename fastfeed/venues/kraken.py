"""Kraken spot WebSocket v2: level 2 books and trades. No I/O.

The protocol (Kraken Spot WebSocket v2, "book", "trade", "ping", "heartbeat", "status"):

* connect to ``wss://ws.kraken.com/v2``; subscribe with ``{"method":"subscribe","params":
  {"channel":"book","symbol":["BTC/USD"],"depth":10},"req_id":N}``; each symbol is
  acknowledged on its own, ``{"method":"subscribe","result":{..,"symbol":..},"success":true,
  ..,"req_id":N}``, or refused with ``"success":false,"error":..``;
* pushes are ``{"channel":"book"|"trade","type":"snapshot"|"update","data":[{"symbol":..,..}]}``;
  book prices and quantities are JSON numbers carrying the venue's full precision;
* keepalive: ``{"method":"ping","req_id":N}`` answered ``{"method":"pong",..}``; the
  ``heartbeat`` channel sends ``{"channel":"heartbeat"}`` about once a second while subscribed;
  ``status`` says whether the engine is ``online``;
* limits: book depth 10, 25, 100, 500 or 1000 per symbol; Kraken meters connection attempts
  (about 150 per 10 minutes per IP) and commands per connection.

Kraken has no sequence numbers: a lost book message shows as a checksum that no longer matches
(``fastfeed.derive.kraken_book``), checked in the derived part with the depth each symbol was
subscribed at (``depth_of``), learnt from the subscribe commands (``sent``: the journal keeps
them, so a reader replaying it knows the depths as the recorder did). Every Message's seq is
None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from fastfeed.venues.events import (
    Event,
    Malformed,
    Pong,
    Subscribed,
    Unsubscribed,
    VenueRejected,
    new_message,
)
from fastfeed.venues.instream import InStreamVenue
from fastfeed.venues.jsonfields import is_uint, load_object, preview, rfc3339_ms
from fastfeed.venues.shapes import json_kind

__all__ = ["DEPTHS", "KrakenAdapter"]

DEPTHS = (10, 25, 100, 500, 1000)
DEFAULT_DEPTH = 10
_DEPTH_NAMES = frozenset(str(d) for d in DEPTHS)
# Refusals that retrying cannot fix (Kraken "Errors": unknown pair or channel, bad params).
_FATAL_PREFIXES = ("Currency pair not supported", "Channel not supported", "Invalid param")
_PONG = Pong()


class KrakenAdapter(InStreamVenue):
    """Parses Kraken v2 frames into events and builds its commands; no I/O."""

    name = "kraken"
    default_endpoint = "wss://ws.kraken.com"
    ws_path = "/v2"
    book_channels: frozenset[str] = frozenset()
    channels = ("book", "book-25", "book-100", "book-500", "book-1000", "trade")

    def __init__(self) -> None:
        self._next_id = 1
        self._pending: dict[int, tuple[str, str]] = {}  # req_id -> (method, channel)
        self._depth: dict[str, int] = {}  # symbol -> subscribed book depth
        self._book_channel: dict[str, str] = {}  # symbol -> ``book`` or ``book-N`` asked for

    def channel(self, name: str) -> str | None:
        """Canonical channel: ``book`` (depth 10, alias ``depth``), ``book-25`` .. ``book-1000``,
        ``trade``; a symbol's book pushes are recorded under the name it was subscribed as."""
        if name in ("book", "depth", "trade"):
            return "book" if name == "depth" else name
        head, _, depth = name.partition("-")
        return name if head == "book" and depth in _DEPTH_NAMES else None

    def sequenced(self, channel: str) -> bool:
        """No Kraken channel carries sequence numbers."""
        return False

    def depth_of(self, symbol: str) -> int:
        """The depth a symbol's book was subscribed at (the checksum truncates to it)."""
        return self._depth.get(symbol, DEFAULT_DEPTH)

    def checked_channel(self, channel: str) -> bool:
        """Every book channel (``book``, ``book-25`` ...) carries a checksum; trades none."""
        return channel.partition("-")[0] == "book"

    def checked_books(self) -> Callable[[str], int]:
        """Books are checked by their checksum, at the depth each symbol was subscribed at."""
        return self.depth_of

    # -- inbound ---------------------------------------------------------------------------------
    def parse(self, frame: bytes | memoryview, recv_ns: int, *, binary: bool = False) -> Event:
        """Turn one frame into an event; never raises (unreadable input is ``Malformed``)."""
        doc = load_object(frame, binary)
        if isinstance(doc, Malformed):
            return doc
        if "method" in doc:
            return self._reply(doc)
        channel = doc.get("channel")
        if channel == "heartbeat":
            return _PONG
        if channel == "status":
            return _status(doc)
        if channel not in ("book", "trade"):
            return Malformed(f"unknown channel {preview(channel)} at $.channel")
        if doc.get("type") not in ("snapshot", "update"):
            got = json_kind(doc.get("type"))
            return Malformed(f"expected 'snapshot' or 'update' at $.type, got {got}")
        data = doc.get("data")
        if type(data) is not list or not data or any(type(e) is not dict for e in data):
            return Malformed(
                f"expected a non-empty array of objects at $.data, got {json_kind(data)}"
            )
        if channel == "book" and len(data) != 1:
            # Kraken: "the book element is always the first and only item" (trades may batch).
            return Malformed(f"expected one object at $.data of a book message, got {len(data)}")
        entry = data[0]
        symbol = entry.get("symbol") if type(entry) is dict else None
        if type(symbol) is not str or not symbol:
            return Malformed(f"expected str at $.data[0].symbol, got {json_kind(symbol)}")
        if channel == "book":
            return _book(self._book_channel.get(symbol, "book"), symbol, doc, entry)
        return _trades(symbol, doc, data)

    def _reply(self, doc: dict[str, Any]) -> Event:
        method = doc.get("method")
        if method == "pong":
            return _PONG
        req_id = doc.get("req_id")
        sent = self._pending.get(req_id) if type(req_id) is int else None
        cmd, channel = sent if sent is not None else (str(method), "")
        result = doc.get("result")
        symbol = result.get("symbol") if type(result) is dict else doc.get("symbol")
        symbols = (symbol,) if type(symbol) is str else ()
        if doc.get("success") is not True:
            err = doc.get("error")
            text = err if type(err) is str else ""
            fatal = text.startswith(_FATAL_PREFIXES)
            return VenueRejected(cmd, -1, text, channel or None, symbols, fatal)
        if method == "subscribe":
            return Subscribed(channel or None, symbols, None)
        if method == "unsubscribe":
            return Unsubscribed(channel or None, symbols)
        return Malformed(f"unknown method {preview(method)} at $.method")

    # -- outbound --------------------------------------------------------------------------------
    def subscribe(
        self, channel: str, symbols: Sequence[str], resume: Mapping[str, int] | None = None
    ) -> bytes:
        """The subscribe method (``resume`` is ignored: Kraken cannot replay)."""
        params: dict[str, Any] = {"channel": channel.partition("-")[0], "symbol": list(symbols)}
        if channel.startswith("book"):
            params["depth"] = int(channel.partition("-")[2] or DEFAULT_DEPTH)
        return self._command("subscribe", channel, params)

    def unsubscribe(self, channel: str, symbols: Sequence[str]) -> bytes:
        """The unsubscribe method."""
        params: dict[str, Any] = {"channel": channel.partition("-")[0], "symbol": list(symbols)}
        if channel.startswith("book"):
            params["depth"] = int(channel.partition("-")[2] or DEFAULT_DEPTH)
        return self._command("unsubscribe", channel, params)

    def _command(self, method: str, channel: str, params: dict[str, Any]) -> bytes:
        req_id = self._next_id
        self._next_id += 1
        payload = orjson.dumps({"method": method, "params": params, "req_id": req_id})
        self.sent(payload)
        return payload

    def sent(self, payload: bytes) -> None:
        """Learn from a command sent (built here, or read back from the journal by a reader
        that never built it) what its replies and a book's pushes mean: the channel and depth
        each symbol's book was subscribed at, and the channel of each request id."""
        doc = load_object(payload, False)
        if isinstance(doc, Malformed):
            return
        method, params, req_id = doc.get("method"), doc.get("params"), doc.get("req_id")
        if type(params) is not dict or type(req_id) is not int:
            return
        channel, depth, symbols = params.get("channel"), params.get("depth"), params.get("symbol")
        if channel == "book" and type(depth) is int and depth != DEFAULT_DEPTH:
            channel = f"book-{depth}"
        if type(method) is not str or type(channel) is not str or type(symbols) is not list:
            return
        if self._next_id <= req_id:
            self._next_id = req_id + 1  # a live adapter continues after what the journal holds
        self._pending[req_id] = (method, channel)  # one ack per symbol: kept, not popped
        if method == "subscribe" and type(depth) is int:
            for symbol in symbols:
                if type(symbol) is str:
                    self._depth[symbol] = depth
                    self._book_channel[symbol] = channel

    def ping(self) -> bytes:
        """Kraken's application ping."""
        return b'{"method":"ping"}'


def _status(doc: dict[str, Any]) -> Event:
    data = doc.get("data")
    entry = data[0] if type(data) is list and data and type(data[0]) is dict else {}
    system = entry.get("system")
    if system == "online":
        return _PONG  # the engine is up: as good as a heartbeat
    text = f"Kraken status {system!r}" if type(system) is str else "Kraken status unknown"
    return VenueRejected("status", -1, text, None, (), False)  # maintenance: retry later


def _book(channel: str, symbol: str, doc: dict[str, Any], entry: dict[str, Any]) -> Event:
    if not is_uint(entry.get("checksum")) or entry["checksum"] > 0xFFFFFFFF:
        got = json_kind(entry.get("checksum"))
        return Malformed(f"expected uint32 at $.data[0].checksum, got {got}")
    for side in ("bids", "asks"):
        levels = entry.get(side)
        if type(levels) is not list or not all(
            type(lv) is dict and _number(lv.get("price")) and _number(lv.get("qty"))
            for lv in levels
        ):
            return Malformed(f"expected [{{price, qty}}] numbers at $.data[0].{side}")
    ts = rfc3339_ms(entry.get("timestamp"))  # snapshots may carry none
    return new_message(channel, symbol, None, ts, doc, None)


def _trades(symbol: str, doc: dict[str, Any], data: list[Any]) -> Event:
    for i, trade in enumerate(data):
        if type(trade) is not dict or trade.get("symbol") != symbol:
            return Malformed(f"expected a trade of {symbol!r} at $.data[{i}]")
        if not (_number(trade.get("price")) and _number(trade.get("qty"))):
            return Malformed(f"expected numbers at $.data[{i}].price and .qty")
        if not is_uint(trade.get("trade_id")):
            return Malformed(f"expected non-negative int64 at $.data[{i}].trade_id")
    ts = rfc3339_ms(data[-1].get("timestamp"))
    if ts is None:
        return Malformed("expected RFC 3339 UTC time at $.data[-1].timestamp")
    return new_message("trade", symbol, None, ts, doc, None)


def _number(value: object) -> bool:
    return (type(value) is float or type(value) is int) and value == value  # not NaN
