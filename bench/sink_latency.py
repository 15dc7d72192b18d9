"""Latency through the frame sink at fixed rates: what fastfeed adds, and send -> durable.

``python -m bench.sink_latency [--rates 10000,500000] [--seconds 4] [--rounds 3]`` writes
bench/results/sink_latency.json. Per rate and round, a paced bench/sender.py (frames stamped
with their write time) feeds fastfeed's real ``Recorder`` (``--fsync group``, 10 streams) run
by ``--one`` in a process of its own, with two measuring additions: the sink's C histogram
(``AcceptTimes``: callback -> accepted, timed inside ``on_ws_frame``) and a journal that logs
each commit's (time, durable LSN). After the run the journal is read back: per frame, send ->
callback (its ``recv_ns``) and send -> durable (the first commit covering its LSN). The disk's
4 KiB write + fdatasync p99 is measured in the same run, for the target ``group window + 2 x
fsync p99``. The first ``WARMUP_SHARE`` of each run's frames (connect, first frames of
each stream) are left out of the journal-derived percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import resource
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import latency
from bench.buildcheck import require_release_build
from bench.hotpath import against_sender
from bench.journal_load import disk_fsync
from bench.window import write_result
from fastfeed import defaults
from fastfeed.datadir import JOURNAL_DIR
from fastfeed.journal import FsyncMode, Journal, RecordKind, read_journal
from fastfeed.logs import setup_logging
from fastfeed.recorder import app
from fastfeed.recorder._sink import AcceptTimes, FrameSink
from fastfeed.recorder.config import RecorderConfig, parse_channel_specs
from fastfeed.recorder.connection import Connection
from fastfeed.recorder.feed import Feed

REPO = Path(__file__).resolve().parents[1]
STREAMS = 10
WARMUP_SHARE = 0.1
POLL_S = 0.01  # done-condition poll: a timer on the loop, not per frame
RUN_LIMIT_S = 120.0
PROBE_PERIOD_S = 0.01
PARTS = (
    "callback_to_accepted",
    "send_to_callback",
    "commit",
    "disk_fsync_meanwhile",
    "send_to_durable",
    "send_to_durable_target",
)
_SENT = b'"sent_ns":'


class CommitLog(Journal):
    """The real ``Journal``, plus (time, durable LSN) each time a commit publishes, and how
    long each commit took (its msync + fdatasync: what send -> durable waits on)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.commits: list[tuple[int, int]] = []
        self.commit_time = latency.new_histogram()
        super().__init__(*args, **kwargs)

    def _commit(self) -> int:
        started = time.monotonic_ns()
        lsn = super()._commit()
        latency.record(self.commit_time, time.monotonic_ns() - started)
        return lsn

    def _notify_waiters(self) -> None:
        self.commits.append((time.time_ns(), self.durable_lsn))  # list.append: thread-safe
        super()._notify_waiters()


def accept_summary(times: AcceptTimes) -> dict[str, Any]:
    """Percentiles (µs) of the sink's histogram, each the upper edge of its bucket."""
    counts = times.buckets()
    total = sum(counts)
    out: dict[str, Any] = {"count": total, "max_us": times.max_ns / 1000}
    for p in latency.PERCENTILES:
        want, seen = total * p / 100, 0
        for i, n in enumerate(counts):
            seen += n
            if seen >= want:
                out[f"p{p:g}_us"] = (i + 1) * times.bucket_ns / 1000
                break
    return out


def from_journal(directory: Path, commits: list[tuple[int, int]]) -> dict[str, Any]:
    """Send -> callback and send -> durable percentiles of the stamped frames journaled."""
    times, lsns, high = [], [], 0
    for t, lsn in sorted(commits):
        if lsn > high:
            high = lsn
            times.append(t)
            lsns.append(lsn)
    stamped = []
    for rec in read_journal(directory):
        at = rec.payload.find(_SENT) if rec.kind == RecordKind.INBOUND else -1
        if at >= 0:
            sent = int(rec.payload[at + len(_SENT) : at + len(_SENT) + 19])
            stamped.append((rec.lsn, rec.recv_ns, sent))
    callback, durable = latency.new_histogram(), latency.new_histogram()
    for lsn, recv_ns, sent in stamped[int(len(stamped) * WARMUP_SHARE) :]:
        latency.record(callback, recv_ns - sent)
        i = bisect.bisect_left(lsns, lsn)
        if i < len(lsns):
            latency.record(durable, times[i] - sent)
    return {
        "send_to_callback": latency.summary(callback),
        "send_to_durable": latency.summary(durable),
    }


async def record(args: argparse.Namespace) -> dict[str, Any]:
    """One recorder run against the paced sender; the measurements of it."""
    config = RecorderConfig(
        endpoint=args.endpoint,
        channels=parse_channel_specs(args.channels),
        data_dir=args.work_dir / "data",
        fsync=FsyncMode.GROUP,
        log_level="warning",
    )
    setup_logging(config.log_format, config.log_level, secrets=[])
    times = AcceptTimes()
    listener = Feed.listener

    def timed(feed: Feed, connection: Connection) -> FrameSink:
        sink = listener(feed, connection)
        assert isinstance(sink, FrameSink)
        sink.timing = times
        return sink

    Feed.listener = timed  # type: ignore[method-assign]
    app.Journal = CommitLog  # type: ignore[misc]
    recorder = app.Recorder(config, None)
    main = asyncio.create_task(recorder.main())
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    while not (hasattr(recorder, "feed") and recorder.feed.frames >= args.frames):
        await asyncio.sleep(POLL_S)
    journal = recorder.journal
    assert isinstance(journal, CommitLog)
    target = journal.accepted_lsn
    while journal.durable_lsn < target:
        await asyncio.sleep(POLL_S)
    # Minor faults: a write to a journal page a commit just cleaned faults again (ext4
    # write-protects synced pages); what that adds shows in callback -> accepted.
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    os.kill(os.getpid(), signal.SIGTERM)
    await main
    return {
        "process": {"minor_faults_per_frame": faults / args.frames},
        "callback_to_accepted": accept_summary(times),
        "commit": latency.summary(journal.commit_time),
        **from_journal(config.data_dir / JOURNAL_DIR, journal.commits),
    }


def one_rate(rate: int, seconds: float, work: Path) -> dict[str, Any]:
    """A paced sender and a recorder process for one rate; the recorder's measurements, and
    the disk's fsync latency measured beside it meanwhile (one 4 KiB fdatasync every
    ``PROBE_PERIOD_S``): the disk as the recorder's commits found it."""
    stop = threading.Event()
    probe: dict[str, Any] = {}
    prober = threading.Thread(
        target=lambda: probe.update(disk_fsync(work, 10**9, stop, PROBE_PERIOD_S))
    )
    prober.start()
    try:
        doc = against_sender(
            ["bench.sink_latency", "--one"],
            STREAMS,
            int(rate * seconds),
            ["--rate", str(rate)],
            RUN_LIMIT_S,
        )
    finally:
        stop.set()
        prober.join()
    doc["disk_fsync_meanwhile"] = probe
    doc["send_to_durable_target"] = {
        "count": 1,
        "p99_us": defaults.GROUP_COMMIT_MS * 1000 + 2 * probe["p99_us"],
    }
    return doc


def table(doc: dict[str, Any]) -> str:
    """The medians as the markdown table docs/benchmarks.md shows (µs)."""
    lines = [
        "| msgs/s | measure | p50 | p90 | p99 | p99.9 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for rate, parts in doc["median"].items():
        for part in PARTS:
            m = parts.get(part, {})  # older results lack the newer parts
            cells = " | ".join(
                f"{m[k]:,.1f}" if k in m else ""
                for k in ("p50_us", "p90_us", "p99_us", "p99.9_us", "max_us")
            )
            lines.append(f"| {int(rate):,} | {part.replace('_', ' ')} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink_latency")
    parser.add_argument("--rates", default="10000,500000", help="msgs/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=4.0, help="frames sent per run, in s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--table", action="store_true", help="print the last run's table")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--channels", action="append", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        write_result(args.out, uvloop.run(record(args)))
        return
    if args.table:
        print(table(orjson.loads((REPO / "bench" / "results" / "sink_latency.json").read_bytes())))
        return
    require_release_build()
    rates = [int(r) for r in args.rates.split(",")]
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="fflat-") as tmp:
        fsync = disk_fsync(Path(tmp), 1000)
        for _ in range(args.rounds):
            for rate in rates:
                doc = one_rate(rate, args.seconds, Path(tmp))
                runs.setdefault(str(rate), []).append(doc)
                print(
                    f"{rate:>8} msgs/s: callback->accepted p99"
                    f" {doc['callback_to_accepted']['p99_us']:.2f} µs, send->durable p99"
                    f" {doc['send_to_durable']['p99_us']:,.0f} µs (target"
                    f" {doc['send_to_durable_target']['p99_us']:,.0f} µs)",
                    flush=True,
                )
    median = {
        rate: {
            part: {k: statistics.median(d[part][k] for d in docs) for k in docs[0][part]}
            for part in docs[0]
        }
        for rate, docs in runs.items()
    }
    write_result(
        REPO / "bench" / "results" / "sink_latency.json",
        {
            "streams": STREAMS,
            "rounds": args.rounds,
            "load_before": os.getloadavg(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "disk_fsync": fsync,
            "durable_target_us": defaults.GROUP_COMMIT_MS * 1000 + 2 * fsync["p99_us"],
            "median": median,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
