"""A flapping venue at speed: every connection is dropped after about a second of data.

The venue is an independent reference (the ``websockets`` library, not fastfeed's simulator)
speaking TickDB's sequence extension: each stream publishes seqs 1..``messages`` at ``rate`` per
second from the moment the venue starts, keeps its whole history (a resume is always served),
and aborts every connection's TCP after a seeded number of frames worth ``drop_after_s`` of
traffic, whether or not the client is caught up. The recorder runs with a seeded jitter.

The measure is the one that matters against a venue without replay: the time from the venue's
last message until every seq is journaled, and the verdict checks it against a bound of a few
seconds plus the backlog's replay at line rate. Afterwards every seq is exported exactly once
with the venue's bytes and no gap is open.

``tests/e2e/test_flapping.py`` runs it; ``scripts/chaos.py --flapping`` is its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve

from .harness import JournalWatch, Recorder, export, gaps

__all__ = ["FlapConfig", "FlapVerdict", "FlappingVenue", "run_flapping"]

TICK_S = 0.002  # how often a connection sends what became due
CATCH_UP_SLACK_S = 3.0  # the "few seconds" of the bound: a reconnect, its resume and its ack
LINE_RATE = 20_000.0  # msgs/s the recorder replays a backlog at, at least (conservative)
CATCH_UP_MAX_S = 120.0  # give up waiting (the verdict then fails on its bound anyway)


@dataclass(frozen=True)
class FlapConfig:
    """How the venue flaps and what the recorder records."""

    workdir: Path
    seed: int
    symbols: tuple[str, ...] = ("F0.US", "F1.US", "F2.US", "F3.US")
    rate: float = 2000.0  # msgs/s per stream
    seconds: float = 12.0  # how long the venue publishes
    drop_after_s: tuple[float, float] = (0.5, 1.5)  # each connection lives this much data


@dataclass
class FlapVerdict:
    """What the run measured; ``ok`` when nothing is missing and the catch-up met its bound."""

    seed: int
    connections: int = 0
    drops: int = 0
    messages: int = 0
    catch_up_s: float = 0.0
    bound_s: float = 0.0
    missing: int = 0
    duplicated: int = 0
    mismatched: int = 0
    open_gaps: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        bad = self.missing + self.duplicated + self.mismatched + self.open_gaps
        return bad == 0 and self.messages > 0 and self.catch_up_s <= self.bound_s

    def line(self) -> str:
        return (
            f"flapping {'PASS' if self.ok else 'FAIL'} seed={self.seed}"
            f" connections={self.connections} drops={self.drops} messages={self.messages}"
            f" catch_up_s={self.catch_up_s:.2f} bound_s={self.bound_s:.2f}"
            f" missing={self.missing} duplicated={self.duplicated}"
            f" mismatched={self.mismatched} open_gaps={self.open_gaps}"
        )


def frame(symbol: str, seq: int) -> bytes:
    """The venue's bytes for one push (a trade), a pure function of stream and seq."""
    price = f"{100 + seq % 997 / 100:.2f}"
    return (
        f'{{"cmd":"trade","seq":{seq},"data":{{"symbol":"{symbol}","price":"{price}",'
        f'"quantity":"{1 + seq % 7}","side":"{"buy" if seq % 2 else "sell"}",'
        f'"timestamp":{1_700_000_000_000 + seq}}}}}'
    ).encode()


class FlappingVenue:
    """The reference venue, on its own thread and event loop, on 127.0.0.1."""

    def __init__(self, config: FlapConfig) -> None:
        self.config = config
        self.messages = int(config.rate * config.seconds)  # per stream
        self.connections = 0
        self.drops = 0
        self.url = ""
        self._rng = random.Random(config.seed)
        self._t0 = 0.0  # time.monotonic() of the first subscribe: seq 1 of every stream
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="flapping-venue", daemon=True)

    @property
    def last_message_at(self) -> float:
        """The ``time.monotonic()`` at which the last seq of every stream became due.

        Read only once every seq was journaled, so after the first subscribe set ``_t0``.
        """
        return self._t0 + self.messages / self.config.rate

    def head(self) -> int:
        """The last seq every stream has published by now (0 before the first subscribe)."""
        if not self._t0:
            return 0
        return min(self.messages, int((time.monotonic() - self._t0) * self.config.rate))

    def __enter__(self) -> FlappingVenue:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the flapping venue did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._connection, "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/v1/realtime"
            self._ready.set()
            await self._stop.wait()

    async def _connection(self, ws: ServerConnection) -> None:
        self.connections += 1
        low, high = self.config.drop_after_s
        streams = len(self.config.symbols)
        budget = int(self._rng.uniform(low, high) * self.config.rate * streams)
        following: dict[str, int] = {}  # symbol -> next seq to send on this connection
        sender = asyncio.create_task(self._send(ws, following, budget))
        try:
            async for message in ws:
                reply = self._command(message, following)
                if reply is not None:
                    await ws.send(reply)
        except Exception:  # the abort below ends the read too; any error ends the connection
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    def _command(self, message: str | bytes, following: dict[str, int]) -> str | None:
        doc: dict[str, Any] = orjson.loads(message)
        if doc.get("cmd") == "ping":
            return '{"cmd":"pong"}'
        if doc.get("cmd") != "subscribe":
            return None
        data = doc["data"]
        if not self._t0:
            self._t0 = time.monotonic()  # the streams start with the first subscriber
        head = self.head()
        streams = {}
        for symbol in data["symbols"]:
            want = int(data.get("resume", {}).get(symbol, head + 1))
            first = min(max(want, 1), head + 1)
            following[symbol] = first
            streams[symbol] = {"first_seq": first, "head_seq": head}
        ack = {"channel": data["channel"], "symbols": data["symbols"], "streams": streams}
        return orjson.dumps({"cmd": "subscribe", "code": 0, "data": ack}).decode()

    async def _send(self, ws: ServerConnection, following: dict[str, int], budget: int) -> None:
        sent = 0
        while True:
            await asyncio.sleep(TICK_S)
            head = self.head()
            for symbol, seq in list(following.items()):
                while seq <= head:
                    await ws.send(frame(symbol, seq).decode())
                    seq += 1
                    sent += 1
                    if sent >= budget:
                        self.drops += 1
                        ws.transport.abort()  # a TCP reset mid-stream: no close frame
                        return
                following[symbol] = seq


def run_flapping(config: FlapConfig, *recorder_options: str) -> FlapVerdict:
    """Record the flapping venue until it has published everything and the recorder has it."""
    verdict = FlapVerdict(config.seed)
    data_dir = config.workdir / "data"
    watch = JournalWatch(data_dir / "journal")
    channels = {"trade": list(config.symbols)}
    keys = [("trade", s) for s in config.symbols]
    with FlappingVenue(config) as venue:
        options = ("--jitter-seed", str(config.seed), *recorder_options)
        with Recorder(config.workdir, data_dir, venue.url, channels, *options) as rec:
            rec.start()

            def caught_up() -> bool:
                seqs = watch.poll().max_seq
                return all(seqs.get(k, 0) >= venue.messages for k in keys)

            rec.until(caught_up, "every seq journaled", timeout=config.seconds + CATCH_UP_MAX_S)
            caught_up_at = time.monotonic()
            assert rec.stop(signal.SIGTERM) == 0
        verdict.connections, verdict.drops = venue.connections, venue.drops
        verdict.catch_up_s = max(0.0, caught_up_at - venue.last_message_at)
        backlog = venue.messages * len(keys) * config.drop_after_s[1] / config.seconds
        verdict.bound_s = CATCH_UP_SLACK_S + backlog / LINE_RATE
        _check(verdict, data_dir, keys, venue.messages)
    return verdict


def _check(verdict: FlapVerdict, data_dir: Path, keys: list[tuple[str, str]], last: int) -> None:
    streams = export(data_dir)
    for key in keys:
        rows = streams.get(key, [])
        seqs = [row["seq"] for row in rows]
        verdict.messages += len(rows)
        verdict.duplicated += len(seqs) - len(set(seqs))
        missing = set(range(1, last + 1)) - set(seqs)
        verdict.missing += len(missing)
        if missing:
            verdict.problems.append(f"{key}: {len(missing)} seqs missing, first {min(missing)}")
        for row in rows:
            if row.get("frame", "").encode() != frame(key[1], row["seq"]):
                verdict.mismatched += 1
    verdict.open_gaps = sum(1 for g in gaps(data_dir) if g["state"] == "open")
