"""A Binance stand-in on loopback: combined-stream WebSocket and REST depth, with faults.

It lives with the tests, not in the package: it serves the recorded fixture frames and exists
to prove the recorder against Binance's protocol (style: fakes live in tests/). The parts a
later venue reuses are the REST server (``rest.py``) and the shape: content generators per
stream, one global publisher, a fault plan, and a log of exactly what was served.

Content: every subscribed stream plays the recorded spot session's frames of its kind (a
symbol not in the recording borrows NKNUSDT's frames, relabelled) and then keeps going with the
same frames renumbered, so ids stay contiguous: a depth push covers ``U = previous u + 1`` to
``u`` (futures: ``pu = previous u`` and ``U`` a little above it, as Binance's shared ids are).
The first pass of a recorded stream is byte for byte the recorded frames. Streams are global,
like Binance's: every connection subscribed to a stream gets the same pushes, so a second
connection (make-before-break rotation) sees the same ids.

Faults (``Faults``): per stream publish indexes dropped, duplicated or reordered; abort each
connection after N frames; close every connection T seconds after it opened (Binance's 24 h,
compressed); REST 429 with ``Retry-After`` for the first N requests; 418 from request N on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from tests.fixture_venue.rest import Response, RestServer

__all__ = ["BinanceVenue", "Faults", "recorded_frames"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
TEMPLATE_SYMBOL = "NKNUSDT"
MAX_STREAMS = 1024  # Binance: streams per connection
COMMANDS_PER_S = {"binance": 5, "binance-futures": 10}
WEIGHT_LIMIT = {"binance": 6000, "binance-futures": 2400}
DEPTH_PATH = {"binance": "/api/v3/depth", "binance-futures": "/fapi/v1/depth"}


def recorded_frames() -> list[bytes]:
    """Every frame of the recorded spot session, in order."""
    lines = (FIXTURES / "spot_recorded.ws").read_bytes().splitlines()
    return [ln.split(b": ", 1)[1] for ln in lines if ln and not ln.startswith(b"wss://")]


def _recorded_book() -> dict[str, Any]:
    """The recorded REST snapshot of the template symbol (its levels are served for any)."""
    for line in (FIXTURES / "spot_recorded.http").read_bytes().splitlines():
        if line.startswith(b"https://") and f"symbol={TEMPLATE_SYMBOL}&".encode() in line:
            body: dict[str, Any] = orjson.loads(line.split(b": ", 1)[1])
            return body
    raise AssertionError("no recorded snapshot of the template symbol")


@dataclass
class Faults:
    """What the venue does wrong; indexes count each stream's pushes from 0."""

    drop: dict[str, set[int]] = field(default_factory=dict)  # stream -> pushes never sent
    duplicate: dict[str, set[int]] = field(default_factory=dict)  # ... sent twice
    reorder: dict[str, set[int]] = field(default_factory=dict)  # ... sent after the next one
    abort_after: int | None = None  # frames sent on a connection before it is cut (no close)
    abort_connections: int = 1  # how many connections (the first ones) abort_after applies to
    max_connection_s: float | None = None  # Binance's 24 h: close every connection this old
    rest_429: int = 0  # the first N snapshot requests get 429
    retry_after_s: int = 1
    rest_418_from: int | None = None  # from the Nth snapshot request on (1-based): 418


class _Stream:
    """One stream's content: the recorded frames of its kind, then the same renumbered."""

    def __init__(self, name: str, market: str, recorded: list[bytes]) -> None:
        self.name = name
        self.symbol = name.partition("@")[0].upper()
        kind = name.partition("@")[2]
        self.futures = market == "binance-futures"
        self.depth = kind.startswith("depth")
        own = [f for f in recorded if f.startswith(b'{"stream":"%s"' % name.encode())]
        if not own:
            # Same kind of another symbol: prefer the template symbol's (most frames).
            pattern = b'{"stream":"%s@%s"' % (TEMPLATE_SYMBOL.lower().encode(), kind.encode())
            own = [f for f in recorded if f.startswith(pattern)]
        if not own:
            raise ValueError(f"no recorded frames for stream kind {kind!r}")
        self.templates = [orjson.loads(f)["data"] for f in own]
        self.count = 0  # pushes published
        first = self.templates[0]
        self.last_u = int(first["U"]) - 1 if self.depth else 0
        ids = ("a", "t", "f", "l") if kind in ("aggTrade", "trade") else ()
        self.next_trade = {k: int(first[k]) for k in ids if k in first}
        span = int(self.templates[-1].get("E", 0)) - int(first.get("E", 0))
        self.e_step = span + 100

    def next_frame(self) -> bytes:
        """The next push of this stream, as Binance frames it."""
        i = self.count
        self.count += 1
        tmpl = self.templates[i % len(self.templates)]
        cycle = i // len(self.templates)
        data: dict[str, Any] = dict(tmpl)
        data["s"] = self.symbol
        if "E" in data:
            data["E"] = int(tmpl["E"]) + cycle * self.e_step
        if self.depth:
            width = int(tmpl["u"]) - int(tmpl["U"])
            prev = self.last_u
            first = prev + 1 + (i % 3 if self.futures else 0)
            self.last_u = first + width
            if self.futures:
                data = {
                    "e": "depthUpdate",
                    "E": data["E"],
                    "T": data["E"] - 2,
                    "s": self.symbol,
                    "U": first,
                    "u": self.last_u,
                    "pu": prev,
                    "b": tmpl["b"],
                    "a": tmpl["a"],
                }
            else:
                data["U"], data["u"] = first, self.last_u
        for k in self.next_trade:
            data[k] = self.next_trade[k] + i
        if "k" in data:
            data["k"] = dict(tmpl["k"], s=self.symbol)
        return b'{"stream":"%s","data":%s}' % (self.name.encode(), orjson.dumps(data))


class _Client(WSListener):
    """The server side of one connection: SUBSCRIBE/UNSUBSCRIBE in, pushes out."""

    def __init__(self, venue: BinanceVenue, index: int, streams: list[str]) -> None:
        super().__init__()
        self.venue = venue
        self.index = index
        self.subs: set[str] = set(streams)
        self.transport: WSTransport | None = None
        self.sent = 0
        self.held: dict[str, bytes] = {}  # stream -> push held back by a reorder fault
        self._commands: list[float] = []
        self._close_timer: asyncio.TimerHandle | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.venue.clients.add(self)
        limit = self.venue.faults.max_connection_s
        if limit is not None:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(limit, self.close)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.venue.clients.discard(self)
        if self._close_timer is not None:
            self._close_timer.cancel()

    def close(self) -> None:
        """Close as Binance does at the 24 h mark."""
        if self.transport is not None:
            self.venue.closed_by_age += 1
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        now = time.monotonic()
        self._commands = [t for t in self._commands if now - t < 1.0] + [now]
        if len(self._commands) > COMMANDS_PER_S[self.venue.market]:
            # Binance: "A connection that goes beyond the limit will be disconnected".
            self.venue.rate_limited += 1
            transport.disconnect(graceful=False)
            return
        try:
            cmd = orjson.loads(frame.get_payload_as_bytes())
            method, params, req_id = cmd["method"], cmd["params"], cmd["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.send(b'{"code":3,"msg":"Invalid JSON: expected method, params and id"}')
            return
        self.venue.commands.append((self.index, cmd))
        if method == "SUBSCRIBE":
            if len(self.subs | set(params)) > MAX_STREAMS:
                self.send(orjson.dumps({"code": 2, "msg": "too many streams", "id": req_id}))
                return
            for name in params:
                self.venue.stream(name)
            self.subs |= set(params)
        elif method == "UNSUBSCRIBE":
            self.subs -= set(params)
        else:
            self.send(orjson.dumps({"code": 2, "msg": f"unknown method {method}", "id": req_id}))
            return
        self.send(orjson.dumps({"result": None, "id": req_id}))

    def send(self, payload: bytes) -> None:
        """Send one text frame and log it; a connection past its abort fault is cut here."""
        if self.transport is None:
            return
        faults = self.venue.faults
        if (
            faults.abort_after is not None
            and self.index < faults.abort_connections
            and self.sent >= faults.abort_after
        ):
            self.venue.aborted += 1
            self.transport.disconnect(graceful=False)
            self.transport = None
            return
        self.sent += 1
        self.venue.served.append((self.index, payload))
        self.transport.send(WSMsgType.TEXT, payload)

    def push(self, name: str, payload: bytes, index: int) -> None:
        """Deliver one push of a subscribed stream, applying the frame faults."""
        faults = self.venue.faults
        if index in faults.reorder.get(name, ()):
            self.held[name] = payload
            return
        self.send(payload)
        if index in faults.duplicate.get(name, ()):
            self.send(payload)
        held = self.held.pop(name, None)
        if held is not None:
            self.send(held)


class BinanceVenue:
    """A running fixture venue: its URLs, what it served, counters for tests."""

    def __init__(
        self, market: str = "binance", faults: Faults | None = None, *, tick_s: float = 0.01
    ) -> None:
        self.market = market
        self.faults = faults or Faults()
        self.tick_s = tick_s  # one push of every subscribed stream per tick
        self.paused = False  # tests stop the publisher to read a quiet state
        self.clients: set[_Client] = set()
        self.streams: dict[str, _Stream] = {}
        self.served: list[tuple[int, bytes]] = []  # (connection index, frame) in send order
        self.snapshots: list[tuple[int, bytes]] = []  # (HTTP status, body) of each response
        self.commands: list[tuple[int, dict[str, Any]]] = []
        self.connections = 0
        self.closed_by_age = 0
        self.aborted = 0
        self.rate_limited = 0
        # The recording has no raw trades: Binance's documented example stands in for them.
        self._recorded = [*recorded_frames(), (FIXTURES / "trade_push.json").read_bytes().strip()]
        self._book = _recorded_book()
        self._weight = 0
        self._weight_minute = 0
        self._server: asyncio.Server | None = None
        self._rest: RestServer | None = None
        self._publisher: asyncio.Task[None] | None = None
        self.ws_url = ""
        self.rest_url = ""

    def stream(self, name: str) -> _Stream:
        """The stream named ``name``, started at its first subscription."""
        stream = self.streams.get(name)
        if stream is None:
            stream = self.streams[name] = _Stream(name, self.market, self._recorded)
        return stream

    async def start(self) -> None:
        """Bind both servers on 127.0.0.1 (any free ports) and start publishing."""
        self._server = await ws_create_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.ws_url = f"ws://127.0.0.1:{port}"
        self._rest = RestServer(self._rest_request)
        self.rest_url = await self._rest.start()
        self._publisher = asyncio.create_task(self._publish(), name="binance-publisher")

    async def close(self) -> None:
        """Stop publishing and drop every connection."""
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        if self._rest is not None:
            await self._rest.close()
        if self._server is not None:
            self._server.close()
            for client in list(self.clients):
                if client.transport is not None:
                    client.transport.disconnect(graceful=False)
            await self._server.wait_closed()

    def _accept(self, request: WSUpgradeRequest) -> WSListener | None:
        parts = urlsplit(request.path.decode("latin-1"))
        if parts.path != "/stream":
            return None  # picows answers 404
        streams = parse_qs(parts.query).get("streams", [""])[0]
        names = [s for s in streams.split("/") if s]
        for name in names:
            self.stream(name)
        self.connections += 1
        return _Client(self, self.connections - 1, names)

    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            if not self.paused:
                self.publish_once()

    def publish_once(self) -> None:
        """One push of every stream anybody is subscribed to."""
        wanted = {name for client in self.clients for name in client.subs}
        for name in sorted(wanted):
            stream = self.streams[name]
            index = stream.count
            payload = stream.next_frame()
            if index in self.faults.drop.get(name, ()):
                continue
            for client in list(self.clients):
                if name in client.subs:
                    client.push(name, payload, index)

    def _rest_request(self, target: str) -> Response:
        parts = urlsplit(target)
        if parts.path != DEPTH_PATH[self.market]:
            return Response(404, b'{"code":-1,"msg":"not found"}')
        query = parse_qs(parts.query)
        symbol = query.get("symbol", [""])[0]
        limit = int(query.get("limit", ["100"])[0])
        n = len(self.snapshots) + 1
        faults = self.faults
        headers: list[tuple[str, str]] = []
        if faults.rest_418_from is not None and n >= faults.rest_418_from:
            status, body = 418, b'{"code":-1003,"msg":"Way too many requests; IP banned."}'
            headers.append(("Retry-After", "120"))
        elif n <= faults.rest_429:
            status, body = 429, b'{"code":-1003,"msg":"Too many requests."}'
            headers.append(("Retry-After", str(faults.retry_after_s)))
        else:
            book = [s for s in self.streams.values() if s.depth and s.symbol == symbol]
            if not book:
                return Response(400, b'{"code":-1121,"msg":"Invalid symbol."}')
            last = book[0].last_u
            levels = {"bids": self._book["bids"][:limit], "asks": self._book["asks"][:limit]}
            status, body = 200, orjson.dumps({"lastUpdateId": last, **levels})
        minute = int(time.time() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight = minute, 0
        self._weight += 50 if self.market == "binance" else 20
        headers.append(("X-MBX-USED-WEIGHT-1M", str(self._weight)))
        self.snapshots.append((status, body))
        return Response(status, body, headers)
