"""One client against bench/sender.py: the time from its first frame to the last one done.

``python -m bench.hotclient KIND --endpoint URL --channels SPEC --frames N --out FILE``. "Done"
is what each client promises: the transport saw the frame; ``ff-none`` journaled it (accepted);
``ff-group``/``ff-always`` made it durable; the naive client committed it; ``os-write`` wrote
it. For fastfeed it also times SQLite catching up with the burst (the applier's rows/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
from websockets.asyncio.client import connect

from bench import baselines
from bench.window import write_result
from fastfeed.journal import FsyncMode
from fastfeed.logs import setup_logging
from fastfeed.recorder import app
from fastfeed.recorder.config import RecorderConfig, parse_channel_specs
from fastfeed.venues.tickdb import TickDBAdapter

POLL_S = 0.001  # done-condition poll (a timer on the loop, not per frame)
NAIVE_COMMIT_EVERY = 100  # the naive design's published batching: commit every 100 rows


async def until(cond: Callable[[], bool]) -> float:
    while not cond():
        await asyncio.sleep(POLL_S)
    return time.monotonic()


async def fastfeed_run(args: argparse.Namespace) -> dict[str, Any]:
    mode = FsyncMode(args.kind.removeprefix("ff-"))
    config = RecorderConfig(
        endpoint=args.endpoint,
        channels=parse_channel_specs(args.channels),
        data_dir=args.work_dir / "data",
        fsync=mode,
        log_level="warning",
    )
    setup_logging(config.log_format, config.log_level, secrets=[])
    recorder = app.Recorder(config, None)
    main = asyncio.create_task(recorder.main())
    await until(lambda: hasattr(recorder, "feed") and recorder.feed.frames > 0)
    t0, c0 = time.monotonic(), time.process_time()
    journal = recorder.journal
    target = 0

    def done() -> bool:
        nonlocal target
        if recorder.feed.frames < args.frames:
            return False
        target = target or journal.accepted_lsn
        return mode is FsyncMode.NONE or journal.durable_lsn >= target

    t1 = await until(done)
    c1 = time.process_time()
    # Commits that synced (ALWAYS: one per socket read, plus Python's own appends) and the
    # time they took, over the ingest: what bounds --fsync always.
    counts, commit_s = journal.commit_seconds.snapshot()
    t2 = await until(lambda: recorder.snapshotter.applied_lsn >= target)
    c2 = time.process_time()
    os.kill(os.getpid(), signal.SIGTERM)
    await main
    return {
        "seconds": t1 - t0,
        "cpu_s": c1 - c0,
        "sqlite_caught_up_s": t2 - t0,
        "sqlite_behind_s": t2 - t1,
        "cpu_s_with_sqlite": c2 - c0,
        "commits": sum(counts),
        "commit_s": commit_s,
    }


async def websockets_run(args: argparse.Namespace) -> dict[str, Any]:
    adapter = TickDBAdapter()
    subs = parse_channel_specs(args.channels)
    subscribes = [adapter.subscribe(ch, syms, None) for ch, syms in subs.items()]
    seen = 0
    t0 = c0 = 0.0
    async with connect(args.endpoint, max_size=None, compression=None) as ws:
        for payload in subscribes:
            await ws.send(payload.decode())
        if args.kind == "os-write":
            fd = os.open(args.work_dir / "frames.log", os.O_WRONLY | os.O_CREAT, 0o600)
            write: Callable[[bytes], None] = lambda frame: os.write(fd, frame) and None  # noqa: E731
        else:
            db = sqlite3.connect(args.work_dir / "naive.db", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, frame BLOB, processed INT)")
            db.execute("BEGIN")

            def write(frame: bytes) -> None:
                # As the naive design's code is written: INSERT, then UPDATE it processed,
                # COMMIT every 100 rows.
                row = db.execute("INSERT INTO messages (frame, processed) VALUES (?, 0)", (frame,))
                db.execute("UPDATE messages SET processed = 1 WHERE id = ?", (row.lastrowid,))
                if seen % NAIVE_COMMIT_EVERY == 0:
                    db.execute("COMMIT")
                    db.execute("BEGIN")

        while seen < args.frames:
            frame = await ws.recv(decode=False)
            if seen == 0:
                t0, c0 = time.monotonic(), time.process_time()
            seen += 1
            write(frame)
        if args.kind == "naive-sqlite":
            db.execute("COMMIT")
    return {"seconds": time.monotonic() - t0, "cpu_s": time.process_time() - c0}


async def transport_run(args: argparse.Namespace) -> dict[str, Any]:
    adapter = TickDBAdapter()
    subs = parse_channel_specs(args.channels)
    subscribes = [adapter.subscribe(ch, syms, None) for ch, syms in subs.items()]
    counter = baselines.Counter(False)
    client = asyncio.create_task(baselines.transport(args.endpoint, subscribes, counter))
    await until(lambda: counter.frames > 0)
    t0, c0 = time.monotonic(), time.process_time()
    t1 = await until(lambda: counter.frames >= args.frames)
    c1 = time.process_time()
    client.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await client
    return {"seconds": t1 - t0, "cpu_s": c1 - c0}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotclient")
    parser.add_argument(
        "kind",
        choices=["transport", "ff-none", "ff-group", "ff-always", "naive-sqlite", "os-write"],
    )
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--channels", action="append", required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.kind == "transport":
        run = transport_run
    elif args.kind.startswith("ff-"):
        run = fastfeed_run
    else:
        run = websockets_run
    doc = uvloop.run(run(args))
    doc["frames"] = args.frames
    doc["msgs_per_s"] = args.frames / doc["seconds"]
    doc["cpu_us_per_msg"] = doc["cpu_s"] * 1e6 / args.frames
    write_result(args.out, doc)


if __name__ == "__main__":
    main()
