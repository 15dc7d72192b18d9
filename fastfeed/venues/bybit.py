"""Bybit v5 public WebSocket, spot and USDT/USDC linear contracts: order books and trades. No I/O.

The protocol (Bybit API v5, "WebSocket Stream" connect page and the public topics):

* connect to ``wss://stream.bybit.com/v5/public/spot`` or ``.../linear``; subscribe with
  ``{"op":"subscribe","args":["orderbook.50.BTCUSDT",...],"req_id":"N"}``; the answer is
  ``{"success":true|false,"ret_msg":...,"conn_id":...,"req_id":"N","op":"subscribe"}``;
* pushes are ``{"topic":"orderbook.50.BTCUSDT","type":"snapshot"|"delta","ts":..,
  "data":{"s":..,"b":[[p,q],..],"a":[..],"u":..,"seq":..},"cts":..}`` and
  ``{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":..,"data":[{"T","s","S","v","p","i",..}]}``;
* keepalive: send ``{"op":"ping"}`` about every 20 s; the answer has ``"op":"ping"`` and
  ``"ret_msg":"pong"`` (spot) or ``"op":"pong"`` (linear);
* limits: spot takes at most 10 args per subscribe request; 500 connections per 5 minutes per
  IP; the args of one connection at most 21,000 characters.

Sequence (order books): ``u`` numbers a symbol's book updates one by one; the loss rules are
``BybitAdapter.step`` over the sequence tracker. ``seq`` is a cross sequence shared with other
depths (for ordering, not for gaps) and is not the Message's seq. Trades have no continuity
rule (``i`` is a trade id, a UUID on linear): their seq is None.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from fastfeed.venues.events import (
    Event,
    Malformed,
    Message,
    Pong,
    Subscribed,
    Unsubscribed,
    VenueRejected,
    new_message,
)
from fastfeed.venues.instream import InStreamVenue, Step
from fastfeed.venues.jsonfields import is_uint, load_object, preview
from fastfeed.venues.shapes import json_kind

__all__ = ["BybitAdapter", "Category"]

_DEPTHS = {"spot": ("1", "50", "200", "1000"), "linear": ("1", "50", "200", "1000")}
_ALIASES = {"depth": "orderbook.50", "trade": "publicTrade"}
_PONG = Pong()


class Category(enum.StrEnum):
    """Which Bybit public stream: the ``--venue`` name is ``bybit`` or ``bybit-linear``."""

    SPOT = "bybit"
    LINEAR = "bybit-linear"


_PATH = {Category.SPOT: "/v5/public/spot", Category.LINEAR: "/v5/public/linear"}


class BybitAdapter(InStreamVenue):
    """Parses Bybit v5 public frames into events and builds its commands; no I/O."""

    default_endpoint = "wss://stream.bybit.com"
    book_channels: frozenset[str] = frozenset()  # snapshots and deltas share a topic
    max_args_per_command = 10  # the venue's limit on spot (module docstring), kept on linear
    channels = ("orderbook.1", "orderbook.50", "orderbook.200", "orderbook.1000", "publicTrade")

    def __init__(self, category: Category = Category.SPOT) -> None:
        self.category = category
        self.name = category.value
        self.ws_path = _PATH[category]
        self._next_id = 1
        # Commands sent and not yet answered, by req_id: what an ack refers to.
        self._pending: dict[str, tuple[str, str, tuple[str, ...]]] = {}

    def channel(self, name: str) -> str | None:
        """The canonical channel of a command-line name (``depth`` -> ``orderbook.50``)."""
        name = _ALIASES.get(name, name)
        if name == "publicTrade":
            return name
        head, _, depth = name.partition(".")
        market = "spot" if self.category is Category.SPOT else "linear"
        return name if head == "orderbook" and depth in _DEPTHS[market] else None

    def sequenced(self, channel: str) -> bool:
        """Order books chain ``u``; trades do not."""
        return channel.startswith("orderbook.")

    def step(self, msg: Message) -> Step:
        """The order book rules (Bybit API v5, "Orderbook"): ``type: snapshot`` replaces the
        book; a ``delta`` continues the chain. A snapshot with ``u = 1`` follows a service
        restart: the tracker sees its id below the last one and starts a new epoch, once (an
        idle level 1 re-sends it every 3 s at the same ``u``, a plain restart)."""
        if msg.data.get("type") != "snapshot" or not msg.channel.startswith("orderbook."):
            return Step.UPDATE
        return Step.SNAPSHOT

    # -- inbound ---------------------------------------------------------------------------------
    def parse(self, frame: bytes | memoryview, recv_ns: int, *, binary: bool = False) -> Event:
        """Turn one frame into an event; never raises (unreadable input is ``Malformed``)."""
        doc = load_object(frame, binary)
        if isinstance(doc, Malformed):
            return doc
        topic = doc.get("topic")
        if topic is None and "op" in doc:
            return self._reply(doc)
        if type(topic) is not str:
            return Malformed(f"expected str at $.topic, got {json_kind(topic)}")
        channel, _, symbol = topic.rpartition(".")
        if self.channel(channel) != channel or not symbol:
            return Malformed(f"unknown topic {topic[:60]!r} at $.topic for {self.name}")
        ts = doc.get("ts")
        if not is_uint(ts):
            return Malformed(f"expected non-negative int64 at $.ts, got {json_kind(ts)}")
        if channel == "publicTrade":
            return _trades(symbol, doc, ts)
        return _book(channel, symbol, doc, ts)

    def _reply(self, doc: dict[str, Any]) -> Event:
        op = doc.get("op")
        if op == "pong" or (op == "ping" and doc.get("success") is not False):
            return _PONG
        req_id = doc.get("req_id")
        sent = self._pending.pop(req_id, None) if type(req_id) is str else None
        cmd, channel, symbols = sent if sent is not None else (str(op), None, ())
        if doc.get("success") is not True:
            msg = doc.get("ret_msg")
            # A refused topic stays refused: stop with Bybit's reason rather than loop.
            return VenueRejected(cmd, -1, msg if type(msg) is str else "", channel, symbols, True)
        if op == "subscribe":
            return Subscribed(channel, symbols, None)
        if op == "unsubscribe":
            return Unsubscribed(channel, symbols)
        return Malformed(f"unknown op {preview(op)} at $.op")

    # -- outbound --------------------------------------------------------------------------------
    def subscribe(
        self, channel: str, symbols: Sequence[str], resume: Mapping[str, int] | None = None
    ) -> bytes:
        """The subscribe op (``resume`` is ignored: Bybit cannot replay)."""
        return self._op("subscribe", channel, symbols)

    def unsubscribe(self, channel: str, symbols: Sequence[str]) -> bytes:
        """The unsubscribe op."""
        return self._op("unsubscribe", channel, symbols)

    def _op(self, op: str, channel: str, symbols: Sequence[str]) -> bytes:
        req_id = str(self._next_id)
        self._next_id += 1
        upper = tuple(s.upper() for s in symbols)
        self._pending[req_id] = (op, channel, upper)
        args = [f"{channel}.{s}" for s in upper]
        return orjson.dumps({"op": op, "args": args, "req_id": req_id})

    def ping(self) -> bytes:
        """Bybit's application ping."""
        return b'{"op":"ping"}'


def _book(channel: str, symbol: str, doc: dict[str, Any], ts: int) -> Event:
    kind_ = doc.get("type")
    if kind_ not in ("snapshot", "delta"):
        return Malformed(f"expected 'snapshot' or 'delta' at $.type, got {json_kind(kind_)}")
    data = doc.get("data")
    if type(data) is not dict:
        return Malformed(f"expected object at $.data, got {json_kind(data)}")
    if data.get("s") != symbol:
        return Malformed(f"expected {symbol!r} at $.data.s, got {json_kind(data.get('s'))}")
    u = data.get("u")
    if not is_uint(u) or u == 0:
        return Malformed(f"expected positive int64 at $.data.u, got {json_kind(u)}")
    for side in ("b", "a"):
        levels = data.get(side)
        if type(levels) is not list or not all(
            type(lv) is list and len(lv) == 2 and type(lv[0]) is str and type(lv[1]) is str
            for lv in levels
        ):
            return Malformed(f"expected [price, size] strings at $.data.{side}")
    return new_message(channel, symbol, u, ts, doc, None)


def _trades(symbol: str, doc: dict[str, Any], ts: int) -> Event:
    data = doc.get("data")
    if type(data) is not list or not data:
        return Malformed(f"expected a non-empty array at $.data, got {json_kind(data)}")
    for i, trade in enumerate(data):
        if type(trade) is not dict or trade.get("s") != symbol:
            return Malformed(f"expected a trade of {symbol!r} at $.data[{i}]")
        for name in ("S", "v", "p", "i"):
            if type(trade.get(name)) is not str:
                return Malformed(
                    f"expected str at $.data[{i}].{name}, got {json_kind(trade.get(name))}"
                )
    return new_message("publicTrade", symbol, None, ts, doc, None)
