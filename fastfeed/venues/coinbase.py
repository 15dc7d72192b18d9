"""Coinbase Advanced Trade market data WebSocket: level2 books, market trades, heartbeats. No I/O.

The protocol (Coinbase Advanced Trade API, "WebSocket Overview" and "WebSocket Channels"):

* connect to ``wss://advanced-trade-ws.coinbase.com``; subscribe one channel at a time with
  ``{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}`` (public channels need
  no JWT); every subscribe is answered with a ``subscriptions`` message listing what the
  connection now holds; an error is ``{"type":"error","message":...}``;
* every message is ``{"channel":..,"client_id":"","timestamp":..,"sequence_num":N,"events":[..]}``;
  ``level2`` pushes as channel ``l2_data`` (events ``snapshot`` then ``update`` per product),
  ``market_trades`` as ``market_trades``;
* channels close after 60-90 s without updates unless the connection also subscribes to
  ``heartbeats`` (one message a second): ``opening_commands`` holds that subscribe;
* limits: 8 messages per second per IP for unauthenticated connections.

Sequence: ``sequence_num`` counts every message of a connection (all channels and products,
heartbeats and subscription acks included), so the check is per connection:
``fastfeed.derive.continuity.CoinbaseSequence``. ``parse`` leaves the number of the frame it
read in ``sequence_num`` for it. A Message's seq is that connection-wide number (not a per
stream counter, so the per-stream tracker must not look for gaps in it).
"""

from __future__ import annotations

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
from fastfeed.venues.jsonfields import is_uint, load_object, preview, rfc3339_ms
from fastfeed.venues.shapes import json_kind

__all__ = ["CoinbaseAdapter"]

HEARTBEATS = "heartbeats"
_SUBSCRIBE_AS = {"level2": "level2", "depth": "level2", "market_trades": "market_trades"}
_SUBSCRIBE_AS["trade"] = "market_trades"
_PUSHED_AS = {"l2_data": "level2", "market_trades": "market_trades"}
_PONG = Pong()


class CoinbaseAdapter(InStreamVenue):
    """Parses Coinbase Advanced Trade frames into events and builds its commands; no I/O."""

    name = "coinbase"
    default_endpoint = "wss://advanced-trade-ws.coinbase.com"
    ws_path = ""
    book_channels: frozenset[str] = frozenset()
    channels = ("level2", "market_trades")
    numbers_connections = True  # sequence_num counts every message of a connection
    commands_per_s = 8

    def __init__(self) -> None:
        self.sequence_num: int | None = None  # of the last frame parsed (None: it had none)
        self._pending: list[tuple[str, str, tuple[str, ...]]] = []  # acks come in order

    def channel(self, name: str) -> str | None:
        """The canonical channel of a command-line name (``depth`` -> ``level2``)."""
        return _SUBSCRIBE_AS.get(name)

    def sequenced(self, channel: str) -> bool:
        """Every channel is numbered, but per connection, not per stream: only ``level2`` can
        be recovered (a resubscribe re-sends the book), so only its gaps wait for recovery."""
        return channel == "level2"

    def step(self, msg: Message) -> Step:
        """A ``level2`` message whose events are a ``snapshot`` is the product's whole book."""
        if msg.channel == "level2" and msg.data["events"][0]["type"] == "snapshot":
            return Step.SNAPSHOT
        return Step.UPDATE

    def connection_seq(self) -> int | None:
        """``sequence_num`` of the frame parsed last (None: it had none)."""
        return self.sequence_num

    # -- inbound ---------------------------------------------------------------------------------
    def parse(self, frame: bytes | memoryview, recv_ns: int, *, binary: bool = False) -> Event:
        """Turn one frame into an event; never raises (unreadable input is ``Malformed``)."""
        self.sequence_num = None
        doc = load_object(frame, binary)
        if isinstance(doc, Malformed):
            return doc
        if doc.get("type") == "error":
            msg = doc.get("message")
            cmd, asked, symbols = self._pending.pop(0) if self._pending else ("unknown", "", ())
            # Coinbase refuses what retrying cannot fix (unknown product or channel): stop.
            text = msg if type(msg) is str else ""
            return VenueRejected(cmd, -1, text, asked or None, symbols, True)
        seq = doc.get("sequence_num")
        if not is_uint(seq):
            return Malformed(f"expected non-negative int64 at $.sequence_num, got {json_kind(seq)}")
        self.sequence_num = seq
        events = doc.get("events")
        if type(events) is not list or any(type(e) is not dict for e in events):
            return Malformed(f"expected array of objects at $.events, got {json_kind(events)}")
        channel = doc.get("channel")
        if channel == HEARTBEATS:
            return _PONG
        if channel == "subscriptions":
            return self._ack(events)
        pushed = _PUSHED_AS.get(channel) if type(channel) is str else None
        if pushed is None:
            return Malformed(f"unknown channel {preview(channel)} at $.channel")
        ts = rfc3339_ms(doc.get("timestamp"))
        if ts is None:
            got = json_kind(doc.get("timestamp"))
            return Malformed(f"expected RFC 3339 UTC time at $.timestamp, got {got}")
        product, problem = _product(pushed, events)
        if product is None:
            return Malformed(problem or "expected at least one event with a product_id")
        return new_message(pushed, product, seq, ts, doc, None)

    def _ack(self, events: list[dict[str, Any]]) -> Event:
        held = events[0].get("subscriptions") if events else None
        if type(held) is not dict:
            return Malformed("expected object at $.events[0].subscriptions")
        cmd, channel, symbols = self._pending.pop(0) if self._pending else ("subscribe", "", ())
        if cmd == "unsubscribe":
            return Unsubscribed(channel or None, symbols)
        return Subscribed(channel or None, symbols, None)

    # -- outbound --------------------------------------------------------------------------------
    def subscribe(
        self, channel: str, symbols: Sequence[str], resume: Mapping[str, int] | None = None
    ) -> bytes:
        """The subscribe message (``resume`` is ignored: Coinbase cannot replay)."""
        return self._command("subscribe", channel, symbols)

    def unsubscribe(self, channel: str, symbols: Sequence[str]) -> bytes:
        """The unsubscribe message."""
        return self._command("unsubscribe", channel, symbols)

    def opening_commands(self) -> list[bytes]:
        """What every connection sends first: the heartbeats subscription keeping it open."""
        return [self._command("subscribe", HEARTBEATS, ())]

    def _command(self, kind_: str, channel: str, symbols: Sequence[str]) -> bytes:
        upper = tuple(s.upper() for s in symbols)
        self._pending.append((kind_, channel, upper))
        doc: dict[str, Any] = {"type": kind_, "channel": channel}
        if upper:
            doc["product_ids"] = list(upper)
        return orjson.dumps(doc)

    def ping(self) -> None:
        """None: the heartbeats channel is Coinbase's keepalive."""
        return None


def _product(channel: str, events: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The one product a push is about, or None and what was wrong."""
    products: set[object] = set()
    for i, event in enumerate(events):
        if channel == "level2":
            if event.get("type") not in ("snapshot", "update"):
                return None, f"expected 'snapshot' or 'update' at $.events[{i}].type"
            if type(event.get("updates")) is not list:
                return None, f"expected array at $.events[{i}].updates"
            products.add(event.get("product_id"))
        else:
            trades = event.get("trades")
            if type(trades) is not list or any(type(t) is not dict for t in trades):
                return None, f"expected array of objects at $.events[{i}].trades"
            products.update(t.get("product_id") for t in trades)
    if len(products) > 1:
        return None, "expected one product per message at $.events[*].product_id"
    product = products.pop() if products else None
    if type(product) is not str or not product:
        return None, f"expected str at $.events[*].product_id, got {json_kind(product)}"
    return product, None
