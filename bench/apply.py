"""The applier's two halves, each alone: deriving rows from journal records, committing them.

``python -m bench.apply`` prints JSON: records/s of ``Pipeline.feed_records`` with the C
scanner (steady streams: the batch path) and without (adapter + tracker per record), and rows/s
of ``Store.apply`` in batches of ``APPLY_BATCH_RECORDS``, over 1, 10 and 100 streams: per
second of wall time, and per second of the applying thread's CPU (steadier on a shared machine).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.buildcheck import require_release_build
from bench.sender import payloads
from fastfeed.defaults import APPLY_BATCH_RECORDS
from fastfeed.derive.pipeline import Pipeline
from fastfeed.journal import JournalRecord, RecordKind
from fastfeed.recorder._sink import Scanner
from fastfeed.store import Store
from fastfeed.venues.tickdb import TickDBAdapter

RECORDS = 200_000


def derive(streams: int, scan: bool) -> tuple[float, list[object]]:
    records = [
        JournalRecord(lsn, RecordKind.INBOUND, 1, 0, lsn, p)
        for lsn, p in enumerate(payloads(RECORDS, streams, 3), 1)
    ]
    pipeline = Pipeline("sim", TickDBAdapter(), scan=Scanner("tickdb").key_seq if scan else None)
    batches = []
    t0 = time.process_time()
    for i in range(0, RECORDS, APPLY_BATCH_RECORDS):
        pipeline.feed_records(records[i : i + APPLY_BATCH_RECORDS])
        batches.append(pipeline.cut())
    return RECORDS / (time.process_time() - t0), batches


def apply(batches: list[object]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="ffapply-") as tmp:
        store = Store.open(Path(tmp) / "fastfeed.db", venue="sim")
        t0, c0 = time.perf_counter(), time.thread_time()
        for batch in batches:
            store.apply(batch)  # type: ignore[arg-type]
        seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
        store.close()
    return RECORDS / seconds, RECORDS / cpu


def main() -> None:
    require_release_build()
    out = []
    for streams in (1, 10, 100):
        fast, batches = derive(streams, True)
        slow, _ = derive(streams, False)
        wall, cpu = apply(batches)
        out.append(
            {
                "streams": streams,
                "derive_scanned_records_per_s": fast,
                "derive_adapter_records_per_s": slow,
                "sqlite_apply_rows_per_s": wall,
                "sqlite_apply_rows_per_cpu_s": cpu,
            }
        )
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
