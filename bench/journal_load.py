"""Journal under load (issue 2) and the disk's own fsync latency, measured in the same run.

* ``disk_fsync``: 4 KiB write + fdatasync, repeated: the floor under any durable latency.
* ``group_commit``: 200-byte records appended as fast as one thread can, then one sync: how many
  records per second become durable with group commit.
* ``durable_lag``: 200-byte records appended at a fixed rate (in 1 ms batches, as frames arrive
  per socket read) with group commit; time from append to the commit that covers it.

``python -m bench.journal_load [--quick]`` writes bench/results/journal.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import latency
from bench.buildcheck import require_release_build
from bench.window import write_result
from fastfeed.journal import FsyncMode, Journal, RecordKind
from tests.e2e.harness import REPO

RECORD = b"x" * 200
DISK_BLOCK = b"\0" * 4096
LAG_RATE = 100_000  # records/s: the durable-lag target rate
LAG_TICK_S = 0.001  # records arrive in batches once a millisecond


def disk_fsync(
    directory: Path, count: int, stop: threading.Event | None = None, period_s: float = 0.0
) -> dict[str, Any]:
    """``count`` 4 KiB writes, each followed by a timed fdatasync; with ``stop``, one every
    ``period_s`` until it is set (the disk as a run sees it, measured beside the run)."""
    hist = latency.new_histogram()
    fd = os.open(directory / "fsync.probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(count):
            if stop is not None and stop.wait(period_s):
                break
            os.write(fd, DISK_BLOCK)
            t0 = time.monotonic_ns()
            os.fdatasync(fd)
            latency.record(hist, time.monotonic_ns() - t0)
    finally:
        os.close(fd)
    return latency.summary(hist)


def group_commit(directory: Path, records: int) -> dict[str, Any]:
    with Journal.open(directory, fsync=FsyncMode.GROUP) as journal:
        append = journal.append
        t0 = time.perf_counter()
        for _ in range(records):
            append(RecordKind.INBOUND, 1, 0, RECORD)
        journal.sync()
        elapsed = time.perf_counter() - t0
    return {"records": records, "seconds": elapsed, "records_per_s": records / elapsed}


def durable_lag(directory: Path, seconds: float) -> dict[str, Any]:
    per_tick = int(LAG_RATE * LAG_TICK_S)
    ticks = int(seconds / LAG_TICK_S)
    Journal.open(directory, fsync=FsyncMode.GROUP).close()  # segments made before timing
    journal = latency.DurableStampJournal(directory, fsync=FsyncMode.GROUP)
    try:
        start = time.monotonic()
        for tick in range(ticks):
            for _ in range(per_tick):
                lsn = journal.append(RecordKind.INBOUND, 1, 0, RECORD)
                journal.watch(lsn, journal.accepted_ns)
            delay = start + (tick + 1) * LAG_TICK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - start
        journal.sync()
    finally:
        journal.close()
    out = latency.summary(journal.durable)
    out["rate_achieved"] = ticks * per_tick / elapsed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.journal_load")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "journal.json")
    args = parser.parse_args()
    require_release_build()
    fsyncs, records, lag_s = (300, 1_000_000, 2.0) if args.quick else (2000, 5_000_000, 10.0)
    with tempfile.TemporaryDirectory(prefix="ffbench-journal-") as tmp:
        work = Path(tmp)
        doc = {
            "disk_fsync": disk_fsync(work, fsyncs),
            "group_commit": group_commit(work / "gc", records),
            "durable_lag": durable_lag(work / "lag", lag_s),
        }
    write_result(args.out, doc)
    print(doc)


if __name__ == "__main__":
    main()
