"""The applier's parts, each alone: polling the journal, deriving rows, committing them.

``python -m bench.apply`` prints JSON. ``apply``: records/s of ``Pipeline.feed_records`` with
the C scanner (steady streams: the batch path) and without (adapter + tracker per record), and
rows/s of ``Store.apply`` in batches of ``APPLY_BATCH_RECORDS``, over 1, 10, 100 and 1,000
streams: per second of wall time, and per second of the applying thread's CPU (steadier on a shared
machine). ``poll``: one journal poll that finds ``POLL_NEW`` new records at the end of a
segment already holding 0, 100k or 250k records, through a new reader per poll (the applier's
way before) against one resumed reader: median µs and mean minor page faults per poll, and the
ratio of the times, each way in blocks of polls in a row.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson

from bench.buildcheck import require_release_build
from bench.sender import payloads
from fastfeed.defaults import APPLY_BATCH_RECORDS
from fastfeed.derive.pipeline import Pipeline
from fastfeed.journal import (
    FsyncMode,
    Journal,
    JournalReader,
    JournalRecord,
    RecordKind,
    read_journal,
)
from fastfeed.journal.segments import segment_path
from fastfeed.recorder._sink import Scanner
from fastfeed.store import Store
from fastfeed.venues.tickdb import TickDBAdapter

RECORDS = 200_000
POLL_FILLS = (0, 100_000, 250_000)  # records in the segment before polling (64 MiB: ~280k)
POLL_NEW = 10  # records each poll finds: a few ms of a 10k msgs/s feed
POLLS = 300
POLL_BLOCK = 50  # polls in a row one way


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


def _timed_poll(poll: Callable[[], int]) -> tuple[int, int, int]:
    """(records, ns, minor faults on this thread) of one ``poll()``."""
    faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    t0 = time.perf_counter_ns()
    got = poll()
    ns = time.perf_counter_ns() - t0
    return got, ns, resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults


def _new_reader_poll(directory: Path, first: int, upto: int) -> int:
    """The applier's poll before: a new reader from ``first``, read, dropped (unmapped)."""
    fresh = read_journal(directory, first)
    got = len(fresh.take(POLL_NEW * 2, upto))
    fresh.close()
    return got


def _resumed_poll(reader: JournalReader, upto: int) -> int:
    """The applier's poll now: the one reader, taking what was written since."""
    return len(reader.take(POLL_NEW * 2, upto))


def _wait_prepared(journal: Journal) -> None:
    """Wait (10 s at most) until the segment after the current one is prepared, as it is
    while a recorder runs: its zero-fill would otherwise compete with the polls measured."""
    deadline = time.monotonic() + 10
    while not segment_path(journal.directory, journal.write_offset[0] + 1).exists():
        if time.monotonic() > deadline:
            raise SystemExit("bench: the journal never prepared its next segment")
        time.sleep(0.01)


def poll(fill: int) -> dict[str, float]:
    """Median µs and mean minor faults per poll after ``fill`` records, new reader vs resumed."""
    frames = payloads(fill + POLLS * POLL_NEW, 10, 3)
    with (
        tempfile.TemporaryDirectory(prefix="ffpoll-") as tmp,
        Journal.open(Path(tmp), fsync=FsyncMode.NONE) as journal,
    ):
        for frame in frames[:fill]:
            journal.append(RecordKind.INBOUND, 1, 0, frame)
        _wait_prepared(journal)
        resumed = read_journal(journal.directory, fill + 1)
        ns: dict[str, list[int]] = {"new": [], "resumed": []}
        faults: dict[str, list[int]] = {"new": [], "resumed": []}
        # In blocks, one way each, alternating: interleaved poll by poll, the new reader's walk
        # over the whole segment would evict from the caches what the resumed one reads next.
        for block in range(POLLS // POLL_BLOCK):
            way = ("resumed", "new")[block % 2]
            resumed.take(fill + POLLS * POLL_NEW)  # untimed: what the other way's block appended
            for _ in range(POLL_BLOCK):
                first = journal.accepted_lsn + 1
                for frame in frames[first - 1 : first - 1 + POLL_NEW]:
                    journal.append(RecordKind.INBOUND, 1, 0, frame)
                upto = journal.accepted_lsn
                if way == "new":
                    got, took, faulted = _timed_poll(
                        partial(_new_reader_poll, journal.directory, first, upto)
                    )
                else:
                    got, took, faulted = _timed_poll(partial(_resumed_poll, resumed, upto))
                assert got == POLL_NEW, (way, got)
                ns[way].append(took)
                faults[way].append(faulted)
        assert journal.write_offset[0] == 0, "the fill rolled over: polls must end one segment"
        resumed.close()
    old_us, new_us = statistics.median(ns["new"]) / 1e3, statistics.median(ns["resumed"]) / 1e3
    return {
        "records_in_segment": fill,
        "new_records_per_poll": POLL_NEW,
        "new_reader_us_per_poll": old_us,
        "resumed_us_per_poll": new_us,
        "new_reader_over_resumed": old_us / new_us,
        "new_reader_minor_faults_per_poll": statistics.mean(faults["new"]),
        "resumed_minor_faults_per_poll": statistics.mean(faults["resumed"]),
    }


def main() -> None:
    require_release_build()
    polls = [poll(fill) for fill in POLL_FILLS]
    out = []
    for streams in (1, 10, 100, 1000):
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
    result = {"apply": out, "poll": polls}
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
