"""A small independent client for simulator tests: the ``websockets`` library, not picows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import orjson
import uvloop
import websockets
from websockets.asyncio.client import ClientConnection

from fastfeed.sim import SimServer

T = TypeVar("T")
TIMEOUT_S = 10.0


def run(make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
    """Run one test coroutine on uvloop (as the recorder does) with a time limit."""

    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return uvloop.run(main(), debug=True)


def url(server: SimServer, query: str = "api_key=k", path: str = "/v1/realtime") -> str:
    return f"ws://127.0.0.1:{server.port}{path}?{query}"


def connect(server: SimServer, query: str = "api_key=k", **kwargs: Any) -> Any:
    """``async with connect(server) as ws``; no compression unless asked.

    The client queue is unbounded: a bounded one stops reading the socket once full, and then
    never reads the server's close frame (the close would wait for websockets' close timeout).
    """
    kwargs.setdefault("compression", None)
    kwargs.setdefault("max_queue", None)
    return websockets.connect(url(server, query), **kwargs)


async def recv(ws: ClientConnection) -> bytes | str:
    """The next frame as wire bytes (text and binary alike)."""
    return await asyncio.wait_for(ws.recv(decode=False), TIMEOUT_S)


async def recv_doc(ws: ClientConnection) -> dict[str, Any]:
    frame = await recv(ws)
    doc = orjson.loads(frame)
    assert isinstance(doc, dict)
    return doc


async def send(ws: ClientConnection, doc: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(doc).decode())


async def subscribe(
    ws: ClientConnection,
    channel: str,
    symbols: list[str],
    resume: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Send a subscribe and return its reply (the next frame: nothing else is subscribed yet)."""
    data: dict[str, Any] = {"channel": channel, "symbols": symbols}
    if resume is not None:
        data["resume"] = resume
    await send(ws, {"cmd": "subscribe", "data": data})
    return await recv_doc(ws)


async def pushes(ws: ClientConnection, count: int) -> list[bytes]:
    """The next ``count`` frames, which must all be pushes, as wire bytes."""
    out = []
    for _ in range(count):
        frame = await recv(ws)
        assert isinstance(frame, bytes)
        out.append(frame)
    return out


def seq_of(frame: bytes) -> int:
    seq = orjson.loads(frame)["seq"]
    assert isinstance(seq, int)
    return seq


async def until(cond: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    """Wait until ``cond()`` holds (checked every loop turn and ms), failing after ``timeout``."""

    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


def reference(seed: int, channel: str, symbol: str, count: int, **kw: Any) -> list[bytes]:
    """Seqs 1..count as the content generator makes them, in order (index 0 is seq 1)."""
    from fastfeed.sim.content import StreamGenerator

    gen = StreamGenerator(seed, channel, symbol, **kw)
    return [gen.next() for _ in range(count)]
