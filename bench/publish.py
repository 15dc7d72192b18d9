"""Publisher msgs/s side by side with what NATS and nats-py themselves reach on the same machine.

One nats-server (JetStream, ``sync_interval: always``) with its store on ``--store-dir`` (default
tmpfs: the publisher's own cost, not the disk's; pass a disk path to see the disk's), one journal
of ``--messages`` simulator frames in 4 streams, then three runs over the same frames, subjects
and headers, each into a fresh stream:

* ``core``: plain NATS publishes, no reply, no ack: the transport ceiling of one Python client;
* ``publish_async``: nats-py's JetStream ``publish_async`` plus waiting on every future;
* ``fastfeed``: ``fastfeed.publish.Publisher`` from reconcile to the last ack, journal reading,
  pipeline and cursor writes included.

Ratios to ``publish_async`` are what to compare across machines. Run:
``python -m bench.publish [--messages N] [--store-dir DIR]`` (needs requirements-test.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.js.api import StorageType, StreamConfig

from bench.window import write_result
from fastfeed.datadir import prepare_data_dir
from fastfeed.journal import FsyncMode, Journal, RecordKind
from fastfeed.publish.cursor import cursor_path, load_cursor
from fastfeed.publish.follower import Follower, Outgoing
from fastfeed.publish.publisher import Publisher
from fastfeed.sim.content import StreamGenerator
from tests.publish.nats_servers import Cluster

STREAMS = [("depth", "AAPL.US"), ("trade", "BTC.CC"), ("ticker", "TSLA.US"), ("depth", "MSFT.US")]
RESULT = Path("bench/results/publish.json")


def build_journal(data: Path, n: int) -> None:
    prepare_data_dir(data)
    gens = [StreamGenerator(1, ch, sym) for ch, sym in STREAMS]
    with Journal.open(data / "journal", fsync=FsyncMode.NONE) as journal:
        for i in range(n):
            journal.append(RecordKind.INBOUND, 1, 1_732_406_400_000_000_000 + i, gens[i % 4].next())


def outgoing(data: Path) -> list[Outgoing]:
    follower = Follower(data / "journal", "tickdb", "md")
    out: list[Outgoing] = []
    while (chunk := follower.poll(2**62, 1 << 20)) is not None:
        out.extend(chunk.messages)
    return out


async def fresh_stream(js: Any, name: str) -> None:
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(name)
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=["md.>"],
            storage=StorageType.FILE,
            duplicate_window=600.0,
            allow_batched=True,
        )
    )


def header_dict(block: bytes) -> dict[str, str]:
    """An Outgoing's header section as the dict nats-py's publish calls take."""
    lines = block.decode().split("\r\n")[1:]
    return dict(line.split(": ", 1) for line in lines if line)


async def run_core(nc: Any, msgs: list[Outgoing]) -> float:
    subjects = [m.subject.decode().replace("md.", "core.", 1) for m in msgs]
    headers = [header_dict(m.headers) for m in msgs]
    t0 = time.perf_counter()
    for m, subject, h in zip(msgs, subjects, headers, strict=True):
        await nc.publish(subject, m.payload, headers=h)
    await nc.flush(timeout=60)
    return time.perf_counter() - t0


async def run_publish_async(js: Any, msgs: list[Outgoing]) -> float:
    subjects = [m.subject.decode() for m in msgs]
    headers = [header_dict(m.headers) for m in msgs]
    t0 = time.perf_counter()
    futures = [
        await js.publish_async(subject, m.payload, headers=h)
        for m, subject, h in zip(msgs, subjects, headers, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*futures), 120)
    return time.perf_counter() - t0


async def run_fastfeed(nc: Any, js: Any, data: Path, n: int) -> tuple[float, dict[str, int]]:
    cursor_file = cursor_path(data, "MD")
    cursor_file.unlink(missing_ok=True)
    t0 = time.perf_counter()
    pub = Publisher(
        nc,
        js,
        journal_dir=data / "journal",
        venue="tickdb",
        stream="MD",
        cursor_file=cursor_file,
        cursor=load_cursor(cursor_file),
    )
    await pub.reconcile()
    stop = asyncio.Event()
    task = asyncio.create_task(pub.run(stop))
    deadline = time.monotonic() + 300
    while pub.acked_lsn < n and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    c = pub.counters
    return elapsed, {"resends": c.resends, "errors": c.errors, "cursor_writes": c.cursor_writes}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(dir=args.store_dir))
    data = Path(tempfile.mkdtemp()) / "data"
    try:
        return await _measure(args, root, data)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # tmpfs is memory
        shutil.rmtree(data.parent, ignore_errors=True)


async def _measure(args: argparse.Namespace, root: Path, data: Path) -> dict[str, Any]:
    build_journal(data, args.messages)
    msgs = outgoing(data)
    cluster = Cluster.start(root, 1)
    try:
        nc = await nats.connect(cluster.urls, pending_size=64 * 1024 * 1024)
        js = nc.jetstream(timeout=30, publish_async_max_pending=8192)
        results: dict[str, Any] = {"messages": len(msgs), "store_dir": args.store_dir}
        results["core_s"] = await run_core(nc, msgs)
        await fresh_stream(js, "MD")
        results["publish_async_s"] = await run_publish_async(js, msgs)
        await fresh_stream(js, "MD")
        results["fastfeed_s"], results["fastfeed_counters"] = await run_fastfeed(
            nc, js, data, args.messages
        )
        await nc.close()
    finally:
        cluster.stop()
    for name in ("core", "publish_async", "fastfeed"):
        results[f"{name}_msgs_per_s"] = round(len(msgs) / results[f"{name}_s"])
    results["fastfeed_vs_publish_async"] = round(
        results["publish_async_s"] / results["fastfeed_s"], 2
    )
    results["fastfeed_vs_core"] = round(results["core_s"] / results["fastfeed_s"], 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--store-dir", default="/dev/shm")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    write_result(RESULT, results)


if __name__ == "__main__":
    main()
