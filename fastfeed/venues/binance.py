"""Binance spot and USD-M futures market streams, and their REST depth snapshots: no I/O.

The protocol (Binance "WebSocket Streams" for spot, "Websocket Market Streams" for USD-M):

* connect to ``<base>/stream`` (a combined stream) and send
  ``{"method":"SUBSCRIBE"|"UNSUBSCRIBE","params":["btcusdt@depth@100ms",...],"id":N}``;
  the answer is ``{"result":null,"id":N}`` or an error ``{"code":C,"msg":M,"id":N}`` (some
  deployments nest it: ``{"error":{"code":C,"msg":M},"id":N}``);
* every push is wrapped ``{"stream":"<symbol>@<type>","data":{...}}``; stream names are lower
  case, the symbol in ``data.s`` upper case;
* the server pings every 20 s (spot) or 3 min (futures) with WebSocket ping frames, answered by
  the connection layer; there is no application-level ping, so ``ping()`` is None (any
  command we sent to keep alive would count against the command rate);
* a connection lives at most 24 h; at most 1024 streams per connection; spot accepts 5 incoming
  messages per second, futures 10.

Sequence fields (Binance, "How to manage a local order book correctly"): a diff-depth push
covers update ids ``U..u``. Spot: each push's ``U`` is the previous push's ``u + 1``, and the
first push after a snapshot has ``U <= lastUpdateId + 1 <= u``. Futures: each push's ``pu``
equals the previous push's ``u`` (futures ids are shared across symbols, so ``U`` is not
``previous u + 1``); the push therefore covers ``pu + 1..u``. ``aggTrade`` ids ``a`` grow by
one per aggregate trade of a symbol, and spot ``trade`` ids ``t`` by one per trade. Book
tickers, klines and futures trades have no continuity rule.

The REST snapshot is ``GET /api/v3/depth?symbol=S&limit=L`` (spot) or ``/fapi/v1/depth``
(futures); its ``lastUpdateId`` is the id the book stands at.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson

from fastfeed import defaults
from fastfeed.venues.events import (
    Event,
    Malformed,
    Pong,
    Snapshot,
    Subscribed,
    Unsubscribed,
    VenueRejected,
    new_message,
)
from fastfeed.venues.shapes import json_kind as _kind

__all__ = [
    "DEPTH_CHANNEL",
    "BinanceAdapter",
    "Market",
    "channels_help",
    "validate_symbol",
]

DEPTH_CHANNEL = "depth"  # the canonical diff-depth channel (100 ms), as status and export name it
MAX_SYMBOL_LEN = 32
_SYMBOL_RE = re.compile(r"[A-Za-z0-9_-]+")
_INT64_MAX = 2**63 - 1
_PONG = Pong()


class Market(enum.StrEnum):
    """Which Binance market: the two differ in URLs, channels, sequence rule and weights."""

    SPOT = "binance"
    FUTURES = "binance-futures"


# Kline intervals (Binance spot "Kline/Candlestick Streams": 1s..1M; USD-M has no 1s).
_KLINE_SPOT: tuple[str, ...] = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h")
_KLINE_SPOT += ("6h", "8h", "12h", "1d", "3d", "1w", "1M")
_KLINE = {Market.SPOT: frozenset(_KLINE_SPOT), Market.FUTURES: frozenset(_KLINE_SPOT[1:])}

# Command-line channel -> the stream type subscribed. `depth` is the 100 ms diff depth; spot's
# plain `@depth` stream is its 1000 ms one, futures' plain `@depth` its 250 ms one.
_SUBSCRIBE_AS = {
    Market.SPOT: {
        "depth": "depth@100ms",
        "depth@100ms": "depth@100ms",
        "depth@1000ms": "depth",
        "trade": "trade",
        "aggTrade": "aggTrade",
        "bookTicker": "bookTicker",
    },
    Market.FUTURES: {
        "depth": "depth@100ms",
        "depth@100ms": "depth@100ms",
        "depth@250ms": "depth",
        "depth@500ms": "depth@500ms",
        "trade": "trade",
        "aggTrade": "aggTrade",
        "bookTicker": "bookTicker",
    },
}
# Stream type as pushed -> the channel recorded (two names of one stream record as one).
_RECORD_AS = {
    Market.SPOT: {
        "depth@100ms": "depth",
        "depth": "depth@1000ms",
        "depth@1000ms": "depth@1000ms",
        "trade": "trade",
        "aggTrade": "aggTrade",
        "bookTicker": "bookTicker",
    },
    Market.FUTURES: {
        "depth@100ms": "depth",
        "depth": "depth@250ms",
        "depth@500ms": "depth@500ms",
        "trade": "trade",
        "aggTrade": "aggTrade",
        "bookTicker": "bookTicker",
    },
}

# Venue facts per market: default endpoints, snapshot path, and the request weight of a depth
# snapshot at the limit asked (spot GET /api/v3/depth: limit 101-500 weighs 25, 501-1000 50;
# USD-M GET /fapi/v1/depth: 500 weighs 10, 1000 weighs 20).
_WS_BASE = {
    Market.SPOT: "wss://stream.binance.com:9443",
    Market.FUTURES: "wss://fstream.binance.com",
}
_REST_BASE = {Market.SPOT: "https://api.binance.com", Market.FUTURES: "https://fapi.binance.com"}
_DEPTH_PATH = {Market.SPOT: "/api/v3/depth", Market.FUTURES: "/fapi/v1/depth"}
_DEPTH_WEIGHT = {
    Market.SPOT: ((100, 5), (500, 25), (1000, 50), (5000, 250)),
    Market.FUTURES: ((50, 2), (100, 5), (500, 10), (1000, 20)),
}
# Request weight a client may use per minute (exchangeInfo REQUEST_WEIGHT, 1 MINUTE).
_WEIGHT_PER_MINUTE = {Market.SPOT: 6000, Market.FUTURES: 2400}
# Incoming commands per second per connection (spot "WebSocket Limits": 5; USD-M: 10).
_COMMANDS_PER_S = {Market.SPOT: 5, Market.FUTURES: 10}
MAX_STREAMS_PER_CONNECTION = 1024  # both markets: "a maximum of 1024 streams"


def validate_symbol(symbol: str) -> str | None:
    """Say what is wrong with a symbol (None if fine); any case is accepted."""
    if not symbol:
        return "empty symbol"
    if len(symbol) > MAX_SYMBOL_LEN:
        return f"longer than {MAX_SYMBOL_LEN} characters"
    if _SYMBOL_RE.fullmatch(symbol) is None:
        return "expected only letters, digits, _ and -"
    return None


def channels_help(market: Market) -> str:
    """The channels a market accepts, for error text."""
    return ", ".join([*_SUBSCRIBE_AS[market], "kline_<interval>"])


class BinanceAdapter:
    """Parses Binance combined-stream frames and REST depth bodies into events; no I/O."""

    replays = False  # no replay: gaps are resynced with REST depth snapshots
    rest_snapshots = True
    rotates = True  # Binance closes a connection after 24 h
    book_channels: frozenset[str] = frozenset()  # depth pushes are diffs, not books
    rejection_hint = "check the channel and symbol names"  # public streams: no key to refuse
    weight_header = "x-mbx-used-weight-1m"  # REST weight used this minute (Binance "LIMITS")
    max_args_per_command = defaults.SUBSCRIBE_BATCH

    def __init__(self, market: Market = Market.SPOT) -> None:
        self.market = market
        self.name = market.value
        self._next_id = 1
        # Commands sent and not yet answered, by id: what an ack or an error refers to.
        self._pending: dict[int, tuple[str, str, tuple[str, ...]]] = {}

    # -- names -----------------------------------------------------------------------------------
    def channel(self, name: str) -> str | None:
        """The canonical channel for a command-line name (``depth@100ms`` -> ``depth``)."""
        if name in _SUBSCRIBE_AS[self.market]:
            return _RECORD_AS[self.market][_SUBSCRIBE_AS[self.market][name]]
        if name.startswith("kline_") and name[6:] in _KLINE[self.market]:
            return name
        return None

    def channels_help(self) -> str:
        """The channels this market accepts, for error text."""
        return channels_help(self.market)

    def symbol_problem(self, symbol: str) -> str | None:
        """What is wrong with a symbol (any case), None if fine."""
        return validate_symbol(symbol)

    def stream_name(self, channel: str, symbol: str) -> str:
        """The stream a canonical channel of a symbol is subscribed as (``btcusdt@depth@100ms``)."""
        wire = _SUBSCRIBE_AS[self.market].get(channel, channel)
        return f"{symbol.lower()}@{wire}"

    def sequenced(self, channel: str) -> bool:
        """Whether a channel's pushes carry ids the recorder checks for continuity."""
        if channel.startswith("depth") or channel == "aggTrade":
            return True
        return channel == "trade" and self.market is Market.SPOT

    def opening_commands(self) -> list[bytes]:
        """Nothing: a connection starts with its subscriptions."""
        return []

    def has_snapshots(self, channel: str) -> bool:
        """Diff-depth channels are resynced by a REST depth snapshot; trades cannot be."""
        return channel.startswith("depth")

    @property
    def max_streams(self) -> int:
        """Streams one connection may carry."""
        return MAX_STREAMS_PER_CONNECTION

    @property
    def commands_per_s(self) -> int:
        """Commands the venue accepts per second per connection."""
        return _COMMANDS_PER_S[self.market]

    commands_per_hour = None  # Binance meters commands per second only

    # -- inbound ---------------------------------------------------------------------------------
    def parse(self, frame: bytes | memoryview, recv_ns: int, *, binary: bool = False) -> Event:
        """Turn one frame into an event; never raises (unreadable input is ``Malformed``)."""
        if binary:
            return Malformed("expected a text frame, got a binary frame")
        doc = _load_object(frame, "")
        if type(doc) is Malformed:
            return doc
        assert type(doc) is dict
        stream = doc.get("stream")
        if stream is not None:
            return self._push(stream, doc.get("data"))
        if "id" in doc:
            return self._reply(doc)
        return Malformed("expected a combined-stream push or a command reply at $")

    def _push(self, stream: object, data: object) -> Event:
        if type(stream) is not str:
            return Malformed(f"expected str at $.stream, got {_kind(stream)}")
        lower, at, wire = stream.partition("@")
        if not at or validate_symbol(lower) is not None or lower != lower.lower():
            return Malformed(f"expected <lowercase symbol>@<type> at $.stream, got {stream[:40]!r}")
        if wire.startswith("kline_"):
            channel: str | None = wire if wire[6:] in _KLINE[self.market] else None
        else:
            channel = _RECORD_AS[self.market].get(wire)
        if channel is None:
            return Malformed(f"unknown stream type {wire[:40]!r} at $.stream for {self.name}")
        if type(data) is not dict:
            return Malformed(f"expected object at $.data, got {_kind(data)}")
        symbol = lower.upper()
        if data.get("s") != symbol:
            return Malformed(f"expected {symbol!r} at $.data.s, got {_kind(data.get('s'))}")
        if channel.startswith("depth"):
            return self._depth(channel, symbol, data)
        if channel == "aggTrade":
            return self._trade(channel, symbol, data, "aggTrade", "a", True)
        if channel == "trade":
            return self._trade(channel, symbol, data, "trade", "t", self.market is Market.SPOT)
        if channel == "bookTicker":
            for name in ("b", "B", "a", "A"):
                if type(data.get(name)) is not str:
                    return Malformed(f"expected str at $.data.{name}, got {_kind(data.get(name))}")
            ts = data.get("E")  # futures book tickers carry an event time, spot ones do not
            return new_message(channel, symbol, None, ts if _is_uint(ts) else None, data, None)
        if data.get("e") != "kline" or type(data.get("k")) is not dict:
            return Malformed("expected a kline event with object $.data.k")
        if data["k"].get("i") != channel[6:]:
            return Malformed(f"expected interval {channel[6:]!r} at $.data.k.i")
        return self._timed(channel, symbol, data, None, None)

    def _depth(self, channel: str, symbol: str, data: dict[str, Any]) -> Event:
        if data.get("e") != "depthUpdate":
            return Malformed(f"expected 'depthUpdate' at $.data.e, got {_kind(data.get('e'))}")
        first, last = data.get("U"), data.get("u")
        if not _is_uint(first):
            return Malformed(f"expected non-negative int64 at $.data.U, got {_kind(first)}")
        if not _is_uint(last) or last < first:
            return Malformed(f"expected int64 >= $.data.U at $.data.u, got {_kind(last)}")
        if self.market is Market.FUTURES:
            prev = data.get("pu")
            if not _is_uint(prev) or prev >= last:
                return Malformed(f"expected int64 below $.data.u at $.data.pu, got {_kind(prev)}")
            first = prev + 1
        problem = _check_levels(data, "$.data.b") or _check_levels(data, "$.data.a")
        if problem is not None:
            return Malformed(problem)
        return self._timed(channel, symbol, data, last, first)

    def _trade(
        self, channel: str, symbol: str, data: dict[str, Any], event: str, id_field: str, seq: bool
    ) -> Event:
        if data.get("e") != event:
            return Malformed(f"expected {event!r} at $.data.e, got {_kind(data.get('e'))}")
        trade_id = data.get(id_field)
        if not _is_uint(trade_id):
            return Malformed(f"expected non-negative int64 at $.data.{id_field}")
        for name in ("p", "q"):
            if type(data.get(name)) is not str:
                return Malformed(f"expected str at $.data.{name}, got {_kind(data.get(name))}")
        return self._timed(channel, symbol, data, trade_id if seq else None, None)

    @staticmethod
    def _timed(
        channel: str, symbol: str, data: dict[str, Any], seq: int | None, first: int | None
    ) -> Event:
        ts = data.get("E")
        if not _is_uint(ts):
            return Malformed(f"expected non-negative int64 at $.data.E, got {_kind(ts)}")
        return new_message(channel, symbol, seq, ts, data, None, first)

    def _reply(self, doc: dict[str, Any]) -> Event:
        req_id = doc.get("id")
        sent = self._pending.pop(req_id, None) if type(req_id) is int else None
        cmd, channel, symbols = sent if sent is not None else ("unknown", None, ())
        nested = doc.get("error")
        error: dict[str, Any] = nested if type(nested) is dict else doc
        if "code" in error:
            code, message = error.get("code"), error.get("msg")
            return VenueRejected(
                cmd,
                code if type(code) is int else -1,
                message if type(message) is str else "",
                channel,
                symbols,
                False,  # no key is involved: nothing Binance refuses is fixed by stopping
            )
        if "result" not in doc or doc["result"] is not None:
            return Malformed("expected result null at $.result for a command reply")
        if cmd == "UNSUBSCRIBE":
            return Unsubscribed(channel, symbols)
        return Subscribed(channel, symbols, None)

    def parse_snapshot(self, channel: str, symbol: str, body: bytes) -> Event:
        """Turn a REST depth body (HTTP 200) into a ``Snapshot``; never raises."""
        doc = _load_object(body, " of the depth snapshot")
        if type(doc) is Malformed:
            return doc
        assert type(doc) is dict
        last = doc.get("lastUpdateId")
        if not _is_uint(last):
            return Malformed(f"expected non-negative int64 at $.lastUpdateId, got {_kind(last)}")
        problem = _check_levels(doc, "$.bids") or _check_levels(doc, "$.asks")
        if problem is not None:
            return Malformed(problem)
        return Snapshot(channel, symbol.upper(), last, doc)

    # -- outbound --------------------------------------------------------------------------------
    def subscribe(
        self, channel: str, symbols: Sequence[str], resume: Mapping[str, int] | None = None
    ) -> bytes:
        """The SUBSCRIBE command (``resume`` is ignored: Binance cannot replay)."""
        return self._command("SUBSCRIBE", channel, symbols)

    def unsubscribe(self, channel: str, symbols: Sequence[str]) -> bytes:
        """The UNSUBSCRIBE command."""
        return self._command("UNSUBSCRIBE", channel, symbols)

    def _command(self, method: str, channel: str, symbols: Sequence[str]) -> bytes:
        req_id = self._next_id
        self._next_id += 1
        upper = tuple(s.upper() for s in symbols)
        self._pending[req_id] = (method, channel, upper)
        params = [self.stream_name(channel, s) for s in upper]
        return orjson.dumps({"method": method, "params": params, "id": req_id})

    def ping(self) -> bytes | None:
        """None: Binance has no application ping (the server pings at the WebSocket level)."""
        return None

    def url(self, endpoint: str, api_key: str | None) -> str:
        """The combined-stream URL under a base ``ws[s]://host[:port]`` (no key: public data)."""
        parts = urlsplit(endpoint or _WS_BASE[self.market])
        return urlunsplit((parts.scheme, parts.netloc, "/stream", "", ""))

    def redacted_url(self, endpoint: str) -> str:
        """The URL as ``url`` builds it: it never holds a secret (user info is dropped)."""
        return _without_userinfo(self.url(endpoint, None))

    # -- REST snapshots --------------------------------------------------------------------------
    def default_rest_base(self) -> str:
        """The venue's REST base URL."""
        return _REST_BASE[self.market]

    def default_ws_base(self) -> str:
        """The venue's WebSocket base URL."""
        return _WS_BASE[self.market]

    def snapshot_target(self, symbol: str, limit: int) -> str:
        """Path and query of a depth snapshot request (``/api/v3/depth?symbol=S&limit=L``)."""
        query = urlencode({"symbol": symbol.upper(), "limit": limit})
        return f"{_DEPTH_PATH[self.market]}?{query}"

    def snapshot_weight(self, limit: int) -> int:
        """The request weight Binance charges for one depth snapshot at ``limit``."""
        for upto, weight in _DEPTH_WEIGHT[self.market]:
            if limit <= upto:
                return weight
        return _DEPTH_WEIGHT[self.market][-1][1]

    @property
    def weight_per_minute(self) -> int:
        """The REST request weight allowed per minute."""
        return _WEIGHT_PER_MINUTE[self.market]


def _load_object(raw: bytes | memoryview, what: str) -> dict[str, Any] | Malformed:
    """``raw`` as a JSON object, or what is wrong with it (``what`` names the document)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Malformed(f"expected JSON at ${what}: {exc}")
    if type(doc) is not dict:
        return Malformed(f"expected object at ${what}, got {_kind(doc)}")
    return doc


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _is_uint(value: object) -> TypeGuard[int]:
    """A non-negative int that fits SQLite's signed 64-bit INTEGER."""
    return type(value) is int and 0 <= value <= _INT64_MAX


def _check_levels(doc: dict[str, Any], where: str) -> str | None:
    """The field ``where`` names (its last part) must be an array of [price, quantity] strings."""
    levels = doc.get(where.rpartition(".")[2])
    if type(levels) is not list:
        return f"expected array at {where}, got {_kind(levels)}"
    for i, level in enumerate(levels):
        if (
            type(level) is not list
            or len(level) != 2
            or type(level[0]) is not str
            or type(level[1]) is not str
        ):
            return f"expected [price, quantity] strings at {where}[{i}]"
    return None
