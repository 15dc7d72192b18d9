"""Micro benchmarks (pytest-benchmark): the per-record costs on the hot path, with baselines.

Run by bench/run.sh as ``pytest bench/test_micro.py --benchmark-json ...``; not part of the test
suite (pyproject's testpaths is tests/). Journal baselines (issue 2): a pure-Python journal
(mmap slice assignment + zlib.crc32) and one SQLite INSERT per message in WAL mode.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.buildcheck import build_problem
from fastfeed.derive.pipeline import Pipeline
from fastfeed.derive.sequence import SequenceTracker
from fastfeed.derive.streams import StreamKey
from fastfeed.journal import FsyncMode, Journal, RecordKind
from fastfeed.journal._wal import crc32c
from fastfeed.sim.content import StreamGenerator
from fastfeed.store import Batch, MessageRow, Store
from fastfeed.venues.binance import BinanceAdapter
from fastfeed.venues.tickdb import TickDBAdapter

RECORD = b"x" * 200  # the 200-byte record
SEGMENT = 1024 * 1024 * 1024  # 1 GiB: no rollover inside a benchmark round
APPLY_ROWS = 10_000  # rows per snapshot batch in the apply benchmark

if (problem := build_problem()) is not None:
    pytest.exit(f"bench: refusing to run: {problem}", returncode=2)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "j", segment_bytes=SEGMENT, fsync=FsyncMode.NONE) as j:
        yield j


def test_journal_append_200b(benchmark: Any, journal: Journal) -> None:
    benchmark(journal.append, RecordKind.INBOUND, 1, 0, RECORD)


class PurePythonJournal:
    """Baseline: the same framing (32-byte header, CRC, 8-byte alignment) in plain Python."""

    HEADER = struct.Struct("<IIQqHHI")  # length, crc, lsn, recv_ns, kind, stream, flags

    def __init__(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, size)
        self.map = mmap.mmap(fd, size)
        os.close(fd)
        self.offset = 0
        self.lsn = 0

    def append(self, kind: int, stream: int, recv_ns: int, payload: bytes) -> int:
        self.lsn += 1
        n = len(payload)
        start = self.offset + 32
        self.map[start : start + n] = payload
        crc = zlib.crc32(payload)
        self.map[self.offset : start] = self.HEADER.pack(n, crc, self.lsn, recv_ns, kind, stream, 0)
        self.offset = (start + n + 7) & ~7
        return self.lsn


def test_baseline_pure_python_journal_append_200b(benchmark: Any, tmp_path: Path) -> None:
    journal = PurePythonJournal(tmp_path / "pp.wal", SEGMENT)
    benchmark(journal.append, 1, 1, 0, RECORD)


def test_baseline_sqlite_insert_per_message_200b(benchmark: Any, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE log (lsn INTEGER PRIMARY KEY, kind INT, recv_ns INT, payload BLOB)")
    insert = "INSERT INTO log (kind, recv_ns, payload) VALUES (1, 0, ?)"
    benchmark(db.execute, insert, (RECORD,))
    db.close()


@pytest.mark.parametrize("size", [200, 65536])
def test_crc32c(benchmark: Any, size: int) -> None:
    benchmark(crc32c, b"y" * size)


@pytest.mark.parametrize("size", [200, 65536])
def test_baseline_zlib_crc32(benchmark: Any, size: int) -> None:
    benchmark(zlib.crc32, b"y" * size)


def test_adapter_parse_depth(benchmark: Any) -> None:
    frame = StreamGenerator(1, "depth", "AAPL.US").next()
    benchmark(TickDBAdapter().parse, frame, 0)


BINANCE_DEPTH = (
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,'
    b'"s":"BTCUSDT","U":%d,"u":%d,"b":[["0.35130000","6195.00000000"],'
    b'["0.34750000","5548.00000000"],["0.34640000","6222.00000000"]],'
    b'"a":[["0.35290000","10968.00000000"]]}}'
)  # a recorded spot diff-depth push (tests/fixtures/binance), ids filled in per use


def test_binance_adapter_parse_depth(benchmark: Any) -> None:
    """Side by side with test_adapter_parse_depth (TickDB's full-book push)."""
    benchmark(BinanceAdapter().parse, BINANCE_DEPTH % (101, 103), 0)


def test_sequence_observe_range(benchmark: Any) -> None:
    """Side by side with test_sequence_observe: the in-order path over U..u ranges."""
    tracker = SequenceTracker()
    key = StreamKey("depth", "BTCUSDT")
    firsts = iter(range(1, 10**9, 3))
    benchmark(lambda: tracker.observe_range(key, (f := next(firsts)), f + 2, 0))


def test_pipeline_feed_binance_depth(benchmark: Any) -> None:
    """Side by side with test_pipeline_feed_depth."""
    frames = [BINANCE_DEPTH % (3 * i + 1, 3 * i + 3) for i in range(200_000)]
    pipeline = Pipeline("binance", BinanceAdapter())
    lsns = iter(range(1, 10**9))

    def feed() -> None:
        lsn = next(lsns)
        pipeline.feed(lsn, RecordKind.INBOUND, 0, frames[lsn % len(frames)])

    benchmark(feed)


def test_sequence_observe(benchmark: Any) -> None:
    tracker = SequenceTracker()
    key = StreamKey("depth", "AAPL.US")
    seqs = iter(range(1, 10**9))
    benchmark(lambda: tracker.observe(key, next(seqs), 0))


def test_pipeline_feed_depth(benchmark: Any) -> None:
    gen = StreamGenerator(1, "depth", "AAPL.US")
    frames = [gen.next() for _ in range(200_000)]
    pipeline = Pipeline("sim", TickDBAdapter())
    lsns = iter(range(1, 10**9))

    def feed() -> None:
        lsn = next(lsns)
        pipeline.feed(lsn, RecordKind.INBOUND, 0, frames[lsn % len(frames)])

    benchmark(feed)


def test_snapshot_apply_10k_rows(benchmark: Any, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", venue="sim")
    gen = StreamGenerator(1, "depth", "AAPL.US")
    frame = gen.next()
    lsn = 0

    def batch() -> tuple[tuple[Batch], dict[str, Any]]:
        nonlocal lsn
        rows = [
            MessageRow("sim", "depth", "AAPL.US", 0, lsn + i, 0, lsn + i, frame, False)
            for i in range(1, APPLY_ROWS + 1)
        ]
        lsn += APPLY_ROWS
        return (Batch(lsn, rows, [], [], [], None, None, None),), {}

    benchmark.pedantic(store.apply, setup=batch, rounds=20)
    benchmark.extra_info["rows_per_round"] = APPLY_ROWS
    store.close()
