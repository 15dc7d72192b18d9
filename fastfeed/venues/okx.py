"""OKX v5 public WebSocket: order books, best bid/offer and trades. No I/O.

The protocol (OKX API v5, "WebSocket" and "Public channel" sections):

* connect to ``wss://ws.okx.com:8443/ws/v5/public``; subscribe with
  ``{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},...]}``; each arg is
  acknowledged ``{"event":"subscribe","arg":{...},"connId":...}``; a refusal is
  ``{"event":"error","code":"60012","msg":...,"connId":...}``; ``{"event":"notice",...}``
  warns of a service upgrade (the connection will be closed: reconnect);
* pushes are ``{"arg":{"channel":C,"instId":I},["action":"snapshot"|"update",]"data":[{...}]}``;
* keepalive: send the text ``ping`` when nothing arrived for a while (OKX closes a connection
  idle for 30 s); the answer is the text ``pong``;
* limits: 3 connection attempts per second per IP, 480 subscribe/unsubscribe/login requests
  per hour per connection, an op's whole ``args`` at most 64 KiB.

Sequence (``books``): each message has ``seqId`` and ``prevSeqId``; the loss rules are
``OkxAdapter.step`` over the sequence tracker. A ``books`` message covers ids ``prevSeqId + 1 ..
seqId`` (``first_seq`` and ``seq`` of the Message). ``books5`` and ``bbo-tbt`` push the whole
top of the book each time (a lost one changes nothing later): their ``seq`` is None. ``trades``
carry ``tradeId``, which OKX does not promise to be contiguous: ``seq`` is None.
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
from fastfeed.venues.jsonfields import is_int, load_object, preview
from fastfeed.venues.shapes import json_kind

__all__ = ["OkxAdapter"]

_CHANNELS = ("books", "books5", "bbo-tbt", "trades")
_ALIASES = {"depth": "books", "trade": "trades"}
# Error codes (OKX "Error Code", WebSocket public): a refusal that no retry can fix stops the
# recorder with the venue's message; anything else (60014 too frequent, 63999 internal,
# 64008 upgrade notice...) is retried by reconnecting.
_FATAL_CODES = frozenset({60012, 60013, 60018})  # invalid request, invalid args, no such channel
_PONG = Pong()


class OkxAdapter(InStreamVenue):
    """Parses OKX v5 public frames into events and builds its commands; no I/O."""

    name = "okx"
    default_endpoint = "wss://ws.okx.com:8443"
    ws_path = "/ws/v5/public"
    channels = _CHANNELS
    book_channels = frozenset({"books5", "bbo-tbt"})  # each push is a whole top of book
    commands_per_hour = 480  # OKX: subscribe/unsubscribe/login requests per hour per connection

    def channel(self, name: str) -> str | None:
        """The canonical channel of a command-line name (``depth`` -> ``books``)."""
        name = _ALIASES.get(name, name)
        return name if name in _CHANNELS else None

    def sequenced(self, channel: str) -> bool:
        """Only ``books`` chains its messages."""
        return channel == "books"

    def step(self, msg: Message) -> Step:
        """The ``books`` rules (OKX API v5, "Order book channel"): ``prevSeqId`` -1 is a
        snapshot; ``seqId == prevSeqId`` with empty sides an idle keepalive (its id must be
        the last one received: the tracker's ``expect`` checks it); ``seqId < prevSeqId`` a
        sequence reset after maintenance; anything else an update."""
        if msg.channel != "books":
            return Step.UPDATE
        data = msg.data["data"][0]
        prev = data["prevSeqId"]
        if prev == -1:
            return Step.SNAPSHOT
        if msg.seq == prev and not data["asks"] and not data["bids"]:
            return Step.KEEPALIVE
        if msg.seq is not None and msg.seq < prev:
            return Step.RESET
        return Step.UPDATE

    # -- inbound ---------------------------------------------------------------------------------
    def parse(self, frame: bytes | memoryview, recv_ns: int, *, binary: bool = False) -> Event:
        """Turn one frame into an event; never raises (unreadable input is ``Malformed``)."""
        if not binary and len(frame) == 4 and bytes(frame) == b"pong":
            return _PONG
        doc = load_object(frame, binary)
        if isinstance(doc, Malformed):
            return doc
        arg = doc.get("arg")
        if "event" in doc:
            return _reply(doc, arg)
        if type(arg) is not dict:
            return Malformed(f"expected object at $.arg, got {json_kind(arg)}")
        channel, inst = arg.get("channel"), arg.get("instId")
        if channel not in _CHANNELS:
            return Malformed(f"unknown channel {preview(channel)} at $.arg.channel")
        if type(inst) is not str or not inst:
            return Malformed(f"expected str at $.arg.instId, got {json_kind(inst)}")
        data = doc.get("data")
        if type(data) is not list or not data or type(data[0]) is not dict:
            return Malformed(
                f"expected a non-empty array of objects at $.data, got {json_kind(data)}"
            )
        if channel == "trades":
            return _trades(inst, doc, data)
        return _book(channel, inst, doc, data[0])

    # -- outbound --------------------------------------------------------------------------------
    def subscribe(
        self, channel: str, symbols: Sequence[str], resume: Mapping[str, int] | None = None
    ) -> bytes:
        """The subscribe op (``resume`` is ignored: OKX cannot replay)."""
        return _op("subscribe", channel, symbols)

    def unsubscribe(self, channel: str, symbols: Sequence[str]) -> bytes:
        """The unsubscribe op."""
        return _op("unsubscribe", channel, symbols)

    def ping(self) -> bytes:
        """OKX's keepalive is the bare text ``ping``."""
        return b"ping"


def _op(op: str, channel: str, symbols: Sequence[str]) -> bytes:
    args = [{"channel": channel, "instId": s.upper()} for s in symbols]
    return orjson.dumps({"op": op, "args": args})


def _reply(doc: dict[str, Any], arg: object) -> Event:
    event = doc.get("event")
    channel = arg.get("channel") if type(arg) is dict else None
    inst = arg.get("instId") if type(arg) is dict else None
    symbols = (inst,) if type(inst) is str else ()
    chan = channel if type(channel) is str else None
    if event == "subscribe":
        return Subscribed(chan, symbols, None)
    if event == "unsubscribe":
        return Unsubscribed(chan, symbols)
    if event in ("error", "notice"):
        raw, msg = doc.get("code"), doc.get("msg")
        code = int(raw) if type(raw) is str and raw.isascii() and raw.isdigit() else -1
        text = msg if type(msg) is str else ""
        return VenueRejected(str(event), code, text, chan, symbols, code in _FATAL_CODES)
    return Malformed(f"unknown event {preview(event)} at $.event")


def _book(channel: str, inst: str, doc: dict[str, Any], data: dict[str, Any]) -> Event:
    for side in ("asks", "bids"):
        problem = _levels(data.get(side), side)
        if problem is not None:
            return Malformed(problem)
    ts = _ms(data.get("ts"))
    if ts is None:
        got = json_kind(data.get("ts"))
        return Malformed(f"expected a millisecond time string at $.data[0].ts, got {got}")
    if channel != "books":
        return new_message(channel, inst, None, ts, doc, None)
    action, seq, prev = doc.get("action"), data.get("seqId"), data.get("prevSeqId")
    if action not in ("snapshot", "update"):
        return Malformed(f"expected 'snapshot' or 'update' at $.action, got {json_kind(action)}")
    if not is_int(seq) or seq < 0:
        return Malformed(f"expected non-negative int64 at $.data[0].seqId, got {json_kind(seq)}")
    if not is_int(prev) or prev < -1:
        return Malformed(f"expected int64 >= -1 at $.data[0].prevSeqId, got {json_kind(prev)}")
    if (action == "snapshot") != (prev == -1):
        return Malformed(f"expected prevSeqId -1 exactly on a snapshot, got {prev} on {action}")
    # An update covers prevSeqId + 1 .. seqId; a snapshot, a keepalive (seqId == prevSeqId) and
    # a sequence reset (seqId < prevSeqId) cover no range of their own.
    first = prev + 1 if 0 <= prev < seq else None
    return new_message(channel, inst, seq, ts, doc, None, first)


def _trades(inst: str, doc: dict[str, Any], data: list[Any]) -> Event:
    for i, trade in enumerate(data):
        if type(trade) is not dict or trade.get("instId") != inst:
            return Malformed(f"expected a trade of {inst!r} at $.data[{i}]")
        for name in ("tradeId", "px", "sz", "side"):
            if type(trade.get(name)) is not str:
                return Malformed(
                    f"expected str at $.data[{i}].{name}, got {json_kind(trade.get(name))}"
                )
    ts = _ms(data[-1].get("ts"))
    if ts is None:
        return Malformed("expected a millisecond time string at $.data[-1].ts")
    msg: Message = new_message("trades", inst, None, ts, doc, None)
    return msg


def _ms(value: object) -> int | None:
    """OKX times are decimal strings of milliseconds."""
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def _levels(levels: object, side: str) -> str | None:
    """OKX levels are ``[price, size, "0", orders]`` strings (the third is deprecated)."""
    if type(levels) is not list:
        return f"expected array at $.data[0].{side}, got {json_kind(levels)}"
    for i, level in enumerate(levels):
        if type(level) is not list or len(level) != 4 or any(type(x) is not str for x in level):
            return f"expected [price, size, '0', orders] strings at $.data[0].{side}[{i}]"
    return None
