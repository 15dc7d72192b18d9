"""The baseline clients that fastfeed is compared with, in the same run and the same window.

* ``transport``: picows on uvloop discarding every frame: the ceiling for any picows recorder.
* ``naive-sqlite``: ``websockets`` client, one SQLite INSERT then one UPDATE marking the row
  processed per message, each its own transaction, WAL mode, synchronous=NORMAL.
* ``os-write``: ``websockets`` client writing each frame to a file with os.write, no fsync.

Run as ``python -m bench.baselines KIND ...`` by bench/load.py; writes one result JSON and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import picows
import uvloop
from websockets.asyncio.client import connect

from bench import latency
from bench.window import measure, sent_ns, write_result
from fastfeed.recorder.config import parse_channel_specs
from fastfeed.venues.tickdb import TickDBAdapter

KINDS = ("transport", "naive-sqlite", "os-write")


class Counter:
    """Frames seen, and (during the window, if asked) send -> callback latency."""

    def __init__(self, timed: bool) -> None:
        self.frames = 0
        self.timed = timed
        self.timing = False
        self.hist = latency.new_histogram()

    def set_timing(self, on: bool) -> None:
        self.timing = on

    def seen(self, frame: bytes, t0: int) -> None:
        self.frames += 1
        if self.timing and (sent := sent_ns(frame)) is not None:
            latency.record(self.hist, t0 - sent)


class _Discard(picows.WSListener):  # type: ignore[misc]
    def __init__(self, counter: Counter, subscribes: list[bytes]) -> None:
        self._counter = counter
        self._subscribes = subscribes

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        for payload in self._subscribes:
            transport.send(picows.WSMsgType.TEXT, payload)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        t0 = time.monotonic_ns()
        if self._counter.timing:
            self._counter.seen(frame.get_payload_as_bytes(), t0)
        else:
            self._counter.frames += 1


async def transport(url: str, subscribes: list[bytes], counter: Counter) -> None:
    tr, _ = await picows.ws_connect(lambda: _Discard(counter, subscribes), url)
    await tr.wait_disconnected()


async def naive_sqlite(url: str, subscribes: list[bytes], counter: Counter, path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)  # autocommit: one transaction a statement
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, frame BLOB, processed INTEGER)")
    async with connect(url, max_size=None, compression=None) as ws:
        for payload in subscribes:
            await ws.send(payload.decode())
        while True:
            frame = await ws.recv(decode=False)
            t0 = time.monotonic_ns()
            row = db.execute("INSERT INTO messages (frame, processed) VALUES (?, 0)", (frame,))
            db.execute("UPDATE messages SET processed = 1 WHERE id = ?", (row.lastrowid,))
            counter.seen(frame, t0)


async def os_write(url: str, subscribes: list[bytes], counter: Counter, path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        async with connect(url, max_size=None, compression=None) as ws:
            for payload in subscribes:
                await ws.send(payload.decode())
            while True:
                frame = await ws.recv(decode=False)
                t0 = time.monotonic_ns()
                os.write(fd, frame)
                counter.seen(frame, t0)
    finally:
        os.close(fd)


async def run(args: argparse.Namespace) -> None:
    adapter = TickDBAdapter()
    subs = parse_channel_specs(args.channels)
    subscribes = [adapter.subscribe(ch, syms, None) for ch, syms in subs.items()]
    url = adapter.url(args.endpoint, "bench-key")
    counter = Counter(args.latency)
    client: Any
    if args.kind == "transport":
        client = transport(url, subscribes, counter)
    elif args.kind == "naive-sqlite":
        client = naive_sqlite(url, subscribes, counter, args.work_dir / "naive.db")
    else:
        client = os_write(url, subscribes, counter, args.work_dir / "frames.log")
    task = asyncio.create_task(client)
    timing = counter.set_timing if args.latency else None
    frames = measure(lambda: counter.frames, args.warmup, args.duration, timing)
    window = asyncio.create_task(frames)
    done, _ = await asyncio.wait({task, window}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        window.cancel()
        task.result()  # the client died: raise why
        raise RuntimeError("the connection closed before the window ended")
    doc: dict[str, Any] = {"window": window.result()}
    if args.latency:
        doc["latency"] = {"callback": latency.summary(counter.hist)}
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    write_result(args.out, doc)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--channels", action="append", required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
