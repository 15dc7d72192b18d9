"""OKX, Bybit, Coinbase and Kraken stand-ins on loopback, serving the real fixture frames with
faults, for the loss detectors (the Binance venue's shape: a fault plan, a log of exactly what
was served; ``running`` from ``thread.py`` drives it).

Deterministic, no timers: a subscribe is answered with the venue's ack, the book's snapshot and
``Plan.updates`` updates, all at once, with the faults applied by update index (1-based: the
snapshot is 0). Each update is built from the venue's real fixture frame with its sequence
fields renumbered: OKX ``seqId`` steps of 1-3 with ``prevSeqId`` the previous one, Bybit
``u`` + 1, Coinbase ``sequence_num`` + 1 per frame of the connection (numbered before faults:
a dropped frame leaves its number unused, as a frame lost on the way would), Kraken levels
changed with the checksum of the resulting book. ``expected_loss`` says which ids a dropped
update covered, for the tests to compare with what the detectors report.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from fastfeed.derive.kraken_book import checksum

__all__ = ["BybitFrames", "ChainVenue", "CoinbaseFrames", "KrakenFrames", "OkxFrames", "Plan"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _fixture(venue: str, name: str) -> Any:
    return orjson.loads((FIXTURES / venue / f"{name}.json").read_bytes())


@dataclass
class Plan:
    """What one subscription is served; update indexes start at 1 (0 is the snapshot)."""

    updates: int = 10
    drop: set[int] = field(default_factory=set)
    duplicate: set[int] = field(default_factory=set)
    reorder: set[int] = field(default_factory=set)  # sent after the next update
    keepalive: set[int] = field(default_factory=set)  # an idle keepalive before this update
    reset: set[int] = field(default_factory=set)  # the venue restarts its numbering here
    never_ack: bool = False  # subscribes are ignored: no ack, no data
    error: bool = False  # subscribes are refused with the venue's error


@dataclass
class _Update:
    index: int
    frame: bytes
    ids: tuple[int, int] | None  # the ids this update covers (inclusive), if numbered


class VenueFrames:
    """One venue's frames: ack, error, snapshot and numbered updates.

    ``ids`` is the venue's, shared by its connections: a symbol's numbering goes on where its
    last subscription left it (a resubscribe's snapshot is at the last id served).
    """

    def __init__(self, ids: dict[str, int] | None = None) -> None:
        self.seq = 0
        self.ids: dict[str, int] = {} if ids is None else ids

    def symbols(self, cmd: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def ack(self, cmd: dict[str, Any]) -> list[bytes]:
        raise NotImplementedError

    def error(self, cmd: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def stream(self, symbol: str, plan: Plan) -> list[_Update]:
        raise NotImplementedError


class OkxFrames(VenueFrames):
    def symbols(self, cmd: dict[str, Any]) -> list[str]:
        if cmd.get("op") != "subscribe":
            return []
        return [a["instId"] for a in cmd["args"] if a["channel"] == "books"]

    def ack(self, cmd: dict[str, Any]) -> list[bytes]:
        return [
            orjson.dumps({"event": cmd["op"], "arg": arg, "connId": "a4d3ae55"})
            for arg in cmd["args"]
        ]

    def error(self, cmd: dict[str, Any]) -> bytes:
        return orjson.dumps(
            {"event": "error", "code": "60018", "msg": "Wrong URL or channel doesn't exist."}
        )

    def stream(self, symbol: str, plan: Plan) -> list[_Update]:
        snap, upd = _fixture("okx", "books_snapshot"), _fixture("okx", "books_update")
        snap["arg"]["instId"] = upd["arg"]["instId"] = symbol
        last = self.ids.get(symbol, 1000)
        snap["data"][0]["seqId"] = last
        out = [_Update(0, orjson.dumps(snap), None)]
        for i in range(1, plan.updates + 1):
            if i in plan.keepalive:
                idle = {**upd, "data": [{**upd["data"][0], "asks": [], "bids": []}]}
                idle["data"][0].update(prevSeqId=last, seqId=last)
                out.append(_Update(-i, orjson.dumps(idle), None))
            data = dict(upd["data"][0])
            if i in plan.reset:
                data.update(prevSeqId=last, seqId=3)  # seqId < prevSeqId: a sequence reset
                last, ids = 3, None
            else:
                step = 1 + i % 3
                data.update(prevSeqId=last, seqId=last + step)
                ids, last = (last + 1, last + step), last + step
            out.append(_Update(i, orjson.dumps({**upd, "data": [data]}), ids))
        self.ids[symbol] = last
        return out


class BybitFrames(VenueFrames):
    def symbols(self, cmd: dict[str, Any]) -> list[str]:
        if cmd.get("op") != "subscribe":
            return []
        return [a.rpartition(".")[2] for a in cmd["args"]]

    def ack(self, cmd: dict[str, Any]) -> list[bytes]:
        reply = {"success": True, "ret_msg": "", "conn_id": "c", "req_id": cmd.get("req_id", "")}
        return [orjson.dumps({**reply, "op": cmd["op"]})]

    def error(self, cmd: dict[str, Any]) -> bytes:
        return orjson.dumps(
            {
                "success": False,
                "ret_msg": f"Invalid topic: {cmd['args'][0]}",
                "conn_id": "c",
                "req_id": cmd.get("req_id", ""),
                "op": "subscribe",
            }
        )

    def stream(self, symbol: str, plan: Plan) -> list[_Update]:
        snap, delta = _fixture("bybit", "orderbook_snapshot"), _fixture("bybit", "orderbook_delta")
        topic = f"orderbook.1.{symbol}"
        u = self.ids.get(symbol, 5000)
        snap.update(topic=topic, data={**snap["data"], "s": symbol, "u": u})
        out = [_Update(0, orjson.dumps(snap), None)]
        for i in range(1, plan.updates + 1):
            if i in plan.reset:  # Bybit: a service restart sends a snapshot with u = 1
                u = 1
                frame = {**snap, "data": {**snap["data"], "u": u}}
                out.append(_Update(i, orjson.dumps(frame), None))
                continue
            u += 1
            frame = {**delta, "topic": topic, "data": {**delta["data"], "s": symbol, "u": u}}
            out.append(_Update(i, orjson.dumps(frame), (u, u)))
        self.ids[symbol] = u
        return out


class CoinbaseFrames(VenueFrames):
    def _numbered(self, doc: dict[str, Any]) -> tuple[bytes, int]:
        seq = self.seq
        self.seq += 1
        return orjson.dumps({**doc, "sequence_num": seq}), seq

    def symbols(self, cmd: dict[str, Any]) -> list[str]:
        if cmd.get("type") != "subscribe" or cmd.get("channel") != "level2":
            return []
        return list(cmd.get("product_ids", []))

    def ack(self, cmd: dict[str, Any]) -> list[bytes]:
        doc = _fixture("coinbase", "subscriptions_ack")
        held = {cmd["channel"]: cmd.get("product_ids", [])}
        doc["events"] = [{"subscriptions": held}]
        return [self._numbered(doc)[0]]

    def error(self, cmd: dict[str, Any]) -> bytes:
        return b'{"type":"error","message":"Failed to subscribe"}'

    def stream(self, symbol: str, plan: Plan) -> list[_Update]:
        snap, upd = _fixture("coinbase", "level2_snapshot"), _fixture("coinbase", "level2_update")
        beat = _fixture("coinbase", "heartbeats_push")
        snap["events"][0]["product_id"] = upd["events"][0]["product_id"] = symbol
        out = [_Update(0, self._numbered(snap)[0], None)]
        for i in range(1, plan.updates + 1):
            if i in plan.keepalive:
                out.append(_Update(-i, self._numbered(beat)[0], None))
            frame, seq = self._numbered(upd)
            out.append(_Update(i, frame, (seq, seq)))
        return out


class KrakenFrames(VenueFrames):
    def symbols(self, cmd: dict[str, Any]) -> list[str]:
        params = cmd.get("params", {})
        ok = cmd.get("method") == "subscribe" and params.get("channel") == "book"
        return list(params.get("symbol", [])) if ok else []

    def ack(self, cmd: dict[str, Any]) -> list[bytes]:
        if cmd.get("method") == "ping":
            return [orjson.dumps({"method": "pong", "req_id": cmd.get("req_id")})]
        return [
            orjson.dumps(
                {
                    "method": cmd["method"],
                    "result": {"channel": "book", "depth": 10, "snapshot": True, "symbol": s},
                    "success": True,
                    "req_id": cmd.get("req_id"),
                }
            )
            for s in cmd["params"]["symbol"]
        ]

    def error(self, cmd: dict[str, Any]) -> bytes:
        symbol = cmd["params"]["symbol"][0]
        return orjson.dumps(
            {
                "error": f"Currency pair not supported {symbol}",
                "method": "subscribe",
                "req_id": cmd.get("req_id"),
                "success": False,
                "symbol": symbol,
            }
        )

    def stream(self, symbol: str, plan: Plan) -> list[_Update]:
        # The real ALGO/USD snapshot, then one bid level's quantity changed per update; the
        # checksum each update carries is that of the venue's book after it.
        raw = (FIXTURES / "kraken" / "book_snapshot.json").read_bytes().strip()
        out = [_Update(0, raw.replace(b'"ALGO/USD"', orjson.dumps(symbol)), None)]
        doc = orjson.loads(raw)["data"][0]
        # Exact level text from the frame (the floats of orjson would drop trailing zeros).
        text = raw.decode()
        bids = _kraken_levels(text, "bids")
        asks = _kraken_levels(text, "asks")
        assert len(bids) == len(doc["bids"]) and len(asks) == len(doc["asks"])
        for i in range(1, plan.updates + 1):
            price = bids[i % len(bids)][0]
            qty = f"{1000 + i}.{i:08d}"
            bids = [(p, qty if p == price else q) for p, q in bids]
            crc = checksum(asks, sorted(bids, key=lambda lv: Decimal(lv[0]), reverse=True))
            name = orjson.dumps(symbol).decode()
            frame = (
                f'{{"channel":"book","type":"update","data":[{{"symbol":{name},"bids":[{{"price":'
                f'{price},"qty":{qty}}}],"asks":[],"checksum":{crc},'
                '"timestamp":"2024-10-03T02:46:57.050170Z"}]}'
            )
            out.append(_Update(i, frame.encode(), (i, i)))
        return out


def _kraken_levels(text: str, side: str) -> list[tuple[str, str]]:
    """The (price, qty) texts of one side of a Kraken v2 book frame, in frame order."""
    body = text.split(f'"{side}":[', 1)[1].split("]", 1)[0]
    out = []
    for level in body.split("},{"):
        price = level.split('"price":', 1)[1].split(",", 1)[0]
        qty = level.split('"qty":', 1)[1].rstrip("}")
        out.append((price, qty))
    return out


_PROTOCOLS = {
    "okx": OkxFrames,
    "bybit": BybitFrames,
    "coinbase": CoinbaseFrames,
    "kraken": KrakenFrames,
}


class _Client(WSListener):
    def __init__(self, venue: ChainVenue) -> None:
        super().__init__()
        self.venue = venue
        self.protocol = _PROTOCOLS[venue.name](venue.ids)
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.venue.clients.add(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.venue.clients.discard(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        payload = frame.get_payload_as_bytes()
        if payload == b"ping":  # OKX's text ping
            self.send(b"pong")
            return
        cmd = orjson.loads(payload)
        self.venue.commands.append(cmd)
        try:
            self.answer(cmd)
        finally:
            self.venue.answered.release()  # the test thread waits on this, not on a clock

    def answer(self, cmd: dict[str, Any]) -> None:
        """Everything one command gets, faults applied."""
        plan = self.venue.plan
        if plan.never_ack:
            return
        if plan.error:
            self.send(self.protocol.error(cmd))
            return
        for ack in self.protocol.ack(cmd):
            self.send(ack)
        for symbol in self.protocol.symbols(cmd):
            # Faults hit a symbol's first subscription only: a resubscribe (the recorder's
            # recovery) or a reconnect is served cleanly.
            faults = plan if symbol not in self.venue.planned else Plan(updates=plan.updates)
            updates = self.protocol.stream(symbol, faults)
            self.venue.planned.setdefault(symbol, updates)
            held: bytes | None = None
            for update in updates:
                if update.index in faults.drop:
                    continue
                if update.index in faults.reorder:
                    held = update.frame
                    continue
                self.send(update.frame)
                if update.index in faults.duplicate:
                    self.send(update.frame)
                if held is not None:
                    self.send(held)
                    held = None

    def send(self, payload: bytes) -> None:
        if self.transport is not None:
            self.venue.served.append(payload)
            self.transport.send(WSMsgType.TEXT, payload)


class ChainVenue:
    """A running fixture venue of one protocol: its URL, what it served, what it planned."""

    def __init__(self, name: str, plan: Plan | None = None) -> None:
        self.name = name
        self.plan = plan or Plan()
        self.clients: set[_Client] = set()
        self.served: list[bytes] = []  # every frame sent, in order
        self.planned: dict[str, list[_Update]] = {}  # symbol -> its first stream, before faults
        self.ids: dict[str, int] = {}  # symbol -> the last id served (VenueFrames.ids)
        self.commands: list[dict[str, Any]] = []
        self.answered = threading.Semaphore(0)  # released once per command fully answered
        self.url = ""
        self._server: asyncio.Server | None = None

    def expected_loss(self, symbol: str) -> list[tuple[int, int]]:
        """The id ranges the dropped updates of ``symbol`` covered, in order."""
        return [
            u.ids for u in self.planned[symbol] if u.index in self.plan.drop and u.ids is not None
        ]

    async def start(self) -> None:
        """Bind on 127.0.0.1 (any free port)."""
        self._server = await ws_create_server(self._accept, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        """Drop every connection and stop listening."""
        if self._server is not None:
            self._server.close()
            for client in list(self.clients):
                if client.transport is not None:
                    with contextlib.suppress(Exception):
                        client.transport.disconnect(graceful=False)
            await self._server.wait_closed()

    def _accept(self, request: WSUpgradeRequest) -> WSListener:
        return _Client(self)
