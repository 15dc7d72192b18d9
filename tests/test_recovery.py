"""Start-up replay: journal records after SQLite's applied LSN land in SQLite exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from fastfeed.catchup import open_view, replay_into
from fastfeed.derive.pipeline import Pipeline
from fastfeed.derive.streams import StreamKey
from fastfeed.journal import FsyncMode, Journal, RecordKind
from fastfeed.recorder.snapshotter import Snapshotter
from fastfeed.sim.content import StreamGenerator
from fastfeed.store import Store
from fastfeed.venues.tickdb import TickDBAdapter

SEG = 64 * 1024


def frames(symbol: str, n: int) -> list[bytes]:
    gen = StreamGenerator(1, "depth", symbol)
    return [gen.next() for _ in range(n)]


def record(journal: Journal, pipeline: Pipeline, kind: RecordKind, payload: bytes) -> None:
    """What the recorder does per record: journal first, then derive."""
    lsn = journal.append(kind, 1, 1_000 + journal.accepted_lsn, payload)
    pipeline.feed(lsn, kind, 1_000 + lsn, payload)


def open_all(data: Path) -> tuple[Journal, Pipeline, Snapshotter]:
    journal = Journal.open(data / "journal", segment_bytes=SEG, fsync=FsyncMode.GROUP)
    pipeline = Pipeline("sim", TickDBAdapter())
    snap = Snapshotter(journal, pipeline, data / "fastfeed.db", fsync=FsyncMode.GROUP, venue="sim")
    return journal, pipeline, snap


def exported(data: Path) -> list[tuple[str, int | None, bytes]]:
    store = Store.open(data / "fastfeed.db", readonly=True)
    try:
        return [(m.symbol, m.seq, m.frame) for m in store.iter_messages()]
    finally:
        store.close()


def test_unsnapshotted_tail_is_replayed_exactly_once(tmp_path: Path) -> None:
    a, b = frames("AAPL.US", 300), frames("TSLA.US", 300)
    journal, pipeline, snap = open_all(tmp_path)
    assert replay_into(journal, pipeline, snap) == 0
    for fa, fb in zip(a[:200], b[:200], strict=True):
        record(journal, pipeline, RecordKind.INBOUND, fa)
        record(journal, pipeline, RecordKind.INBOUND, fb)
    asyncio.run(snap.flush())  # first 400 records reach SQLite with applied_lsn = 400
    assert snap.applied_lsn == 400
    for fa, fb in zip(a[200:], b[200:], strict=True):
        record(journal, pipeline, RecordKind.INBOUND, fa)
        record(journal, pipeline, RecordKind.INBOUND, fb)
    # Crash: the last 200 records are journaled but never snapshotted.
    snap.close()
    journal.close()

    journal, pipeline, snap = open_all(tmp_path)
    assert replay_into(journal, pipeline, snap) == 200
    assert snap.applied_lsn == 600
    # Replaying again changes nothing: applied_lsn moved with the rows.
    assert replay_into(journal, pipeline, snap) == 0
    assert pipeline.resume_point(StreamKey("depth", "AAPL.US")) == 301
    snap.close()
    journal.close()

    rows = exported(tmp_path)
    assert rows == [("AAPL.US", i + 1, f) for i, f in enumerate(a)] + [
        ("TSLA.US", i + 1, f) for i, f in enumerate(b)
    ]


def test_duplicates_and_gaps_survive_restart(tmp_path: Path) -> None:
    a = frames("AAPL.US", 20)
    journal, pipeline, snap = open_all(tmp_path)
    replay_into(journal, pipeline, snap)
    for i in [*range(0, 10), 5, 6, *range(14, 20)]:  # dups of 6,7; seqs 11..14 missing
        record(journal, pipeline, RecordKind.INBOUND, a[i])
    asyncio.run(snap.flush())
    snap.close()
    journal.close()

    journal, pipeline, snap = open_all(tmp_path)
    replay_into(journal, pipeline, snap)
    for i in range(10, 14):  # the backfill arrives after the restart
        record(journal, pipeline, RecordKind.INBOUND, a[i])
    asyncio.run(snap.flush())
    status = snap.store.status()
    gaps = snap.store.gaps()
    snap.close()
    journal.close()

    assert [r[1] for r in exported(tmp_path)] == list(range(1, 21))
    (stream,) = status["streams"]
    assert (stream["records"], stream["duplicates"], stream["last_seq"]) == (20, 2, 20)
    assert [(g["from_seq"], g["to_seq"], g["state"]) for g in gaps] == [(11, 14, "filled")]


def test_malformed_frames_are_kept_counted_and_skipped(tmp_path: Path) -> None:
    journal, pipeline, snap = open_all(tmp_path)
    replay_into(journal, pipeline, snap)
    good = frames("AAPL.US", 2)
    record(journal, pipeline, RecordKind.INBOUND, good[0])
    record(journal, pipeline, RecordKind.INBOUND, b'{"cmd":"depth","data":')
    record(journal, pipeline, RecordKind.INBOUND, b"\xff\xfe not json")
    record(journal, pipeline, RecordKind.INBOUND, good[1])
    asyncio.run(snap.flush())
    counters = snap.store.counters()
    snap.close()
    journal.close()
    assert counters["malformed"] == 2
    assert [r[1] for r in exported(tmp_path)] == [1, 2]
    kept = [r.payload for r in Journal.open(tmp_path / "journal").read()]
    assert b"\xff\xfe not json" in kept


def test_an_oversized_marker_loses_its_seq_and_is_counted_across_a_restart(
    tmp_path: Path,
) -> None:
    journal, pipeline, snap = open_all(tmp_path)
    replay_into(journal, pipeline, snap)
    pushes = frames("AAPL.US", 5)
    for f in pushes[:2]:
        record(journal, pipeline, RecordKind.INBOUND, f)
    marker = {"event": "oversized", "size": 17_000_000, "channel": "depth"}
    marker |= {"symbol": "AAPL.US", "seq": 3}
    record(journal, pipeline, RecordKind.GAP, orjson.dumps(marker))
    asyncio.run(snap.flush())
    for f in pushes[3:]:  # after the skip: journaled, not yet in SQLite
        record(journal, pipeline, RecordKind.INBOUND, f)
    snap.close()
    journal.close()
    journal, pipeline, snap = open_all(tmp_path)
    replay_into(journal, pipeline, snap)
    try:
        counters, gaps = snap.store.counters(), snap.store.gaps()
        assert pipeline.resume_point(StreamKey("depth", "AAPL.US")) == 6
    finally:
        snap.close()
        journal.close()
    assert counters["oversized"] == 1
    reason = "frame over the size limit (17000000 bytes)"
    assert [(g["from_seq"], g["to_seq"], g["state"], g["reason"]) for g in gaps] == [
        (3, 3, "lost", reason)
    ]
    assert [r[1] for r in exported(tmp_path)] == [1, 2, 4, 5]


def test_a_read_only_view_derives_a_crashed_recorders_tail(tmp_path: Path) -> None:
    (tmp_path / "FORMAT").write_text("1\n")
    journal, pipeline, snap = open_all(tmp_path)
    replay_into(journal, pipeline, snap)
    record(journal, pipeline, RecordKind.CONTROL, orjson.dumps({"subscriptions": {}}))
    for f in frames("AAPL.US", 5):
        record(journal, pipeline, RecordKind.INBOUND, f)
    snap.close()
    journal.close()
    assert exported(tmp_path) == []
    view = open_view(tmp_path, messages=True)
    try:
        rows = [(m.symbol, m.seq) for m in view.store.iter_messages(pending=view.pending)]
        status = view.store.status(view.pending)
    finally:
        view.close()
    assert rows == [("AAPL.US", n) for n in range(1, 6)]
    assert view.pending is not None and view.pending.applied_lsn == 6
    assert status["applied_lsn"] == 0
    assert [s["records"] for s in status["streams"]] == [5]
    assert exported(tmp_path) == []  # derived in memory: SQLite itself is untouched


def test_a_venue_restarts_epoch_carries_across_a_recorder_restart(tmp_path: Path) -> None:
    # 1200 seqs, then the venue restarts at 1: epoch 1. Three of its seqs are snapshotted, the
    # next three only journaled (crash): the restarted recorder's replay must keep epoch 1.
    a = frames("AAPL.US", 1200)
    journal, pipeline, snap = open_all(tmp_path)
    for frame in a:
        record(journal, pipeline, RecordKind.INBOUND, frame)
    for frame in a[:3]:
        record(journal, pipeline, RecordKind.INBOUND, frame)
    asyncio.run(snap.flush())
    for frame in a[3:6]:
        record(journal, pipeline, RecordKind.INBOUND, frame)
    snap.close()
    journal.close()

    journal, pipeline, snap = open_all(tmp_path)
    assert replay_into(journal, pipeline, snap) == 3
    snap.close()
    journal.close()
    store = Store.open(tmp_path / "fastfeed.db", readonly=True)
    try:
        rows = [(m.epoch, m.seq, m.frame) for m in store.iter_messages()]
    finally:
        store.close()
    assert rows == [(0, i + 1, f) for i, f in enumerate(a)] + [
        (1, i + 1, f) for i, f in enumerate(a[:6])
    ]
