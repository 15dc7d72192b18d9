"""Publisher msgs/s side by side with what NATS and nats-py themselves reach on the same machine.

One nats-server (JetStream, ``sync_interval: always``) with its store on ``--store-dir`` (default
tmpfs: the publisher's own cost, not the disk's; pass a disk path to see the disk's), one journal
of ``--messages`` simulator frames in 4 streams, then runs over the same frames, subjects and
headers, each into a fresh stream (``allow_batched``):

* ``core``: plain NATS publishes, no reply, no ack: the transport ceiling of one Python client;
* ``publish_async``: nats-py's JetStream ``publish_async`` plus waiting on every future;
* ``hpub_acks``: HPUB commands built beforehand, one PubAck each through a nats-py subscription,
  8192 in flight: the per-message-ack design fastfeed used before, without its journal reading;
* ``fast_batch``: the same commands in one ADR-50 fast-ingest batch (one flow ack per 500, four
  ahead, then a commit): what this design reaches with nothing to read or derive;
* ``fastfeed``: ``fastfeed.publish.Publisher`` from reconcile to the last ack, journal reading,
  pipeline and cursor writes included.

Each run also records the CPU this process and the server spent per message: on a machine whose
cores are shared, their sum is what bounds msgs/s. Ratios are what to compare across machines.
Run: ``python -m bench.publish [--messages N] [--store-dir DIR] [--replicas 3]`` (needs
requirements-test.txt); ``--replicas 3`` starts a 3-node cluster on this machine and R3 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.js.api import StorageType, StreamConfig

from bench.window import write_result
from fastfeed import defaults
from fastfeed.datadir import prepare_data_dir
from fastfeed.journal import FsyncMode, Journal, RecordKind
from fastfeed.publish.cursor import cursor_path, load_cursor
from fastfeed.publish.follower import Follower, Outgoing
from fastfeed.publish.publisher import Publisher
from fastfeed.publish.reading import stream_info
from fastfeed.publish.wire import header_block, hpub, write
from fastfeed.sim.content import StreamGenerator
from tests.publish.nats_servers import Cluster

STREAMS = [("depth", "AAPL.US"), ("trade", "BTC.CC"), ("ticker", "TSLA.US"), ("depth", "MSFT.US")]
RESULT = Path("bench/results/publish.json")
RESULT_R3 = Path("bench/results/publish-r3.json")  # --replicas 3: three servers, one machine


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


async def fresh_stream(nc: Any, name: str, replicas: int) -> None:
    js = nc.jetstream(timeout=30)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        # Asked again, 5 s a time, while a new cluster elects its meta leader.
        await stream_info(nc.jetstream(timeout=5), name)
        await js.delete_stream(name)
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=["md.>"],
            storage=StorageType.FILE,
            num_replicas=replicas,
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


async def run_hpub_acks(nc: Any, msgs: list[Outgoing]) -> float:
    inbox = nc.new_inbox()
    cmds = [
        hpub(m.subject, f"{inbox}.{i}".encode(), m.headers, m.payload) for i, m in enumerate(msgs)
    ]
    acked = 0
    room = asyncio.Event()

    async def on_ack(reply: Any) -> None:
        nonlocal acked
        acked += 1
        room.set()

    sub = await nc.subscribe(f"{inbox}.*", cb=on_ack)
    t0 = time.perf_counter()
    await _pipeline(nc, cmds, lambda: acked + defaults.PUBLISH_WINDOW, room)
    await _until(lambda: acked == len(cmds), room)
    elapsed = time.perf_counter() - t0
    await sub.unsubscribe()
    return elapsed


async def run_fast_batch(nc: Any, msgs: list[Outgoing]) -> float:
    inbox = nc.new_inbox()
    head = f"{inbox}.bench.{defaults.PUBLISH_BATCH_FLOW}.fail.".encode()
    cmds = [
        hpub(m.subject, head + b"%d.%d.$FI" % (i + 1, 0 if i == 0 else 1), m.headers, m.payload)
        for i, m in enumerate(msgs)
    ]
    eob = hpub(msgs[-1].subject, head + b"%d.3.$FI" % (len(msgs) + 1), header_block(b"", b""), b"")
    flow = {"seq": -1, "msgs": defaults.PUBLISH_BATCH_FLOW}
    final: dict[str, Any] = {}
    room = asyncio.Event()

    async def on_ack(reply: Any) -> None:
        doc = orjson.loads(reply.data)
        if doc.get("type") == "ack":
            flow.update(doc)
        else:
            final.update(doc)
        room.set()

    sub = await nc.subscribe(f"{inbox}.>", cb=on_ack)
    t0 = time.perf_counter()
    await write(nc, cmds[0])
    await _until(lambda: flow["seq"] >= 0, room)  # ADR-50: wait for the start's answer
    ahead = defaults.PUBLISH_BATCH_ACKS_AHEAD
    await _pipeline(nc, cmds, lambda: flow["seq"] + flow["msgs"] * ahead, room, first=1)
    await write(nc, eob)
    await _until(lambda: bool(final), room)
    elapsed = time.perf_counter() - t0
    await sub.unsubscribe()
    if final.get("count") != len(msgs):
        raise RuntimeError(f"fast batch: {final}")
    return elapsed


async def _pipeline(
    nc: Any, cmds: list[bytes], limit: Callable[[], int], room: asyncio.Event, first: int = 0
) -> None:
    """Write ``cmds`` 256 at a time, never past ``limit()`` (the acks' window)."""
    sent = first
    while sent < len(cmds):
        end = min(len(cmds), sent + defaults.PUBLISH_WRITE_BATCH, limit())
        if end <= sent:
            room.clear()
            await asyncio.wait_for(room.wait(), 60)
            continue
        await write(nc, b"".join(cmds[sent:end]))
        sent = end


async def _until(done: Callable[[], bool], room: asyncio.Event) -> None:
    while not done():
        room.clear()
        await asyncio.wait_for(room.wait(), 120)


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


RUNS = ("core", "publish_async", "hpub_acks", "fast_batch", "fastfeed")


async def _measure(args: argparse.Namespace, root: Path, data: Path) -> dict[str, Any]:
    build_journal(data, args.messages)
    msgs = outgoing(data)
    cluster = Cluster.start(root, args.replicas)
    server_pids = [server.proc.pid for server in cluster.servers if server.proc is not None]
    results: dict[str, Any] = {
        "messages": len(msgs),
        "store_dir": args.store_dir,
        "replicas": args.replicas,
        "load_average_before": os.getloadavg()[0],
    }
    try:
        nc = await nats.connect(cluster.urls.split(","), pending_size=64 * 1024 * 1024)
        js = nc.jetstream(timeout=30, publish_async_max_pending=8192)

        async def fastfeed() -> float:
            elapsed, results["fastfeed_counters"] = await run_fastfeed(nc, js, data, args.messages)
            return elapsed

        runs: dict[str, Callable[[], Awaitable[float]]] = {
            "core": lambda: run_core(nc, msgs),
            "publish_async": lambda: run_publish_async(js, msgs),
            "hpub_acks": lambda: run_hpub_acks(nc, msgs),
            "fast_batch": lambda: run_fast_batch(nc, msgs),
            "fastfeed": fastfeed,
        }
        for name in RUNS:
            await fresh_stream(nc, "MD", args.replicas)
            cpu, server_cpu = time.process_time(), _cpu_of(server_pids)
            results[f"{name}_s"] = await runs[name]()
            per_msg = 1e6 / len(msgs)
            results[f"{name}_client_cpu_us"] = round((time.process_time() - cpu) * per_msg, 2)
            results[f"{name}_server_cpu_us"] = round(
                (_cpu_of(server_pids) - server_cpu) * per_msg, 2
            )
        await nc.close()
    finally:
        cluster.stop()
    results["load_average_after"] = os.getloadavg()[0]
    for name in RUNS:
        results[f"{name}_msgs_per_s"] = round(len(msgs) / results[f"{name}_s"])
    for name in RUNS[:-1]:
        results[f"fastfeed_vs_{name}"] = round(results[f"{name}_s"] / results["fastfeed_s"], 2)
    return results


def _cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds of processes ``pids`` so far (/proc/PID/stat, clock ticks)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--store-dir", default="/dev/shm")
    parser.add_argument("--replicas", type=int, choices=(1, 3), default=1, help="servers, R")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    write_result(RESULT if args.replicas == 1 else RESULT_R3, results)


if __name__ == "__main__":
    main()
