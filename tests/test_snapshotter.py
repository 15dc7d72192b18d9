"""Snapshotter: overlapping flushes commit in LSN order (the periodic one and shutdown's); the
live applier holds off a burst only within its bounds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fastfeed import defaults
from fastfeed.derive.pipeline import Pipeline
from fastfeed.journal import FsyncMode, Journal, RecordKind
from fastfeed.recorder import snapshotter
from fastfeed.recorder.snapshotter import Snapshotter
from fastfeed.sim.content import StreamGenerator
from fastfeed.venues.tickdb import TickDBAdapter
from tests.recording import count_readers


def test_a_flush_started_while_another_waits_for_durability_commits_after_it(
    tmp_path: Path,
) -> None:
    # A long group window keeps the first flush waiting for durability until sync() below.
    journal = Journal.open(tmp_path / "journal", fsync=FsyncMode.GROUP, group_commit_ms=60_000)
    pipeline = Pipeline("sim", TickDBAdapter())
    snap = Snapshotter(
        journal, pipeline, tmp_path / "fastfeed.db", fsync=FsyncMode.GROUP, venue="sim"
    )
    gen = StreamGenerator(1, "depth", "AAPL.US")

    def record(n: int) -> None:
        for _ in range(n):
            payload = gen.next()
            lsn = journal.append(RecordKind.INBOUND, 1, 1_000, payload)
            pipeline.feed(lsn, RecordKind.INBOUND, 1_000, payload)

    async def scenario() -> None:
        record(10)
        journal.sync()
        record(10)  # the periodic flush cuts LSN 20 and waits for the next group commit
        periodic = asyncio.create_task(snap.flush())
        await asyncio.sleep(0)
        record(10)
        journal.sync()  # what shutdown does: everything durable, then the final flush
        final = await snap.flush()
        await periodic
        assert final == snap.applied_lsn == 30

    try:
        asyncio.run(scenario())
    finally:
        snap.close()
        journal.close()


def test_abandon_aborts_the_sqlite_commit_in_flight_and_starts_no_other(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal", fsync=FsyncMode.GROUP)
    pipeline = Pipeline("sim", TickDBAdapter())
    snap = Snapshotter(
        journal, pipeline, tmp_path / "fastfeed.db", fsync=FsyncMode.GROUP, venue="sim"
    )
    gen = StreamGenerator(1, "trade", "BTC.CC")
    for _ in range(300_000):  # a batch SQLite takes far longer to commit than the test waits
        payload = gen.next()
        lsn = journal.append(RecordKind.INBOUND, 1, 1_000, payload)
        pipeline.feed(lsn, RecordKind.INBOUND, 1_000, payload)
    journal.sync()
    started = journal_applied = 0

    async def scenario() -> None:
        nonlocal started
        flush = asyncio.create_task(snap.flush())
        # Wait (on a condition) until the store thread is inside the transaction.
        while not snap.store.in_transaction():
            await asyncio.sleep(0.001)
        started = 1
        snap.abandon()
        assert await flush == 0  # rolled back, not raised
        assert await snap.flush() == 0  # and no later flush starts

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
        journal_applied = snap.call(snap.store.applied_lsn)
    finally:
        snap.close()
        journal.close()
    assert (started, journal_applied) == (1, 0)


def test_the_live_flush_holds_off_a_burst_until_its_lag_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every look counts as a burst and the time bound never runs out: only lag ends a hold-off.
    monkeypatch.setattr(defaults, "DERIVE_DEFER_RATE", 0)
    monkeypatch.setattr(defaults, "DERIVE_DEFER_MAX_S", 3600.0)
    monkeypatch.setattr(defaults, "DERIVE_DEFER_MAX_RECORDS", 50)
    journal = Journal.open(tmp_path / "journal", fsync=FsyncMode.NONE)
    pipeline = Pipeline("sim", TickDBAdapter())
    snap = Snapshotter(
        journal, pipeline, tmp_path / "fastfeed.db", fsync=FsyncMode.NONE, venue="sim"
    )
    gen = StreamGenerator(1, "trade", "BTC.CC")

    def append(n: int) -> None:
        for _ in range(n):
            journal.append(RecordKind.INBOUND, 1, 1_000, gen.next())

    async def scenario() -> None:
        append(10)
        live = asyncio.create_task(snap.flush(defer=True))
        for _ in range(3):  # without a hold-off the first turn derives all ten
            await asyncio.sleep(0)
        assert pipeline.derived_lsn == 0 and not live.done()
        append(50)  # 60 behind: past the bound, the rest is derived at once
        assert await asyncio.wait_for(live, 30) == 60
        append(10)  # shutdown's flush never holds off
        assert await asyncio.wait_for(snap.flush(), 30) == 70

    try:
        asyncio.run(scenario())
    finally:
        snap.close()
        journal.close()


def test_a_wake_ends_a_hold_off_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A frame Python must look at (a gap to resync, a refusal) is not kept waiting by a burst.
    monkeypatch.setattr(defaults, "DERIVE_DEFER_RATE", 0)
    monkeypatch.setattr(defaults, "DERIVE_DEFER_MAX_S", 3600.0)
    journal = Journal.open(tmp_path / "journal", fsync=FsyncMode.NONE)
    pipeline = Pipeline("sim", TickDBAdapter())
    snap = Snapshotter(
        journal, pipeline, tmp_path / "fastfeed.db", fsync=FsyncMode.NONE, venue="sim"
    )
    gen = StreamGenerator(1, "trade", "BTC.CC")

    async def scenario() -> None:
        for _ in range(10):
            journal.append(RecordKind.INBOUND, 1, 1_000, gen.next())
        live = asyncio.create_task(snap.flush(defer=True))
        for _ in range(3):
            await asyncio.sleep(0)
        assert pipeline.derived_lsn == 0 and not live.done()  # held off
        snap.wake()
        assert await asyncio.wait_for(live, 30) == 10

    try:
        asyncio.run(scenario())
    finally:
        snap.close()
        journal.close()


def test_with_fsync_always_the_applier_derives_only_durable_records(tmp_path: Path) -> None:
    # The sink appends a read unsynced and has the commit thread sync it while the next read
    # comes in: accepted runs ahead of durable, and the applier must not run ahead with it.
    # (A journal in NONE mode makes records durable only at sync(): accepted stays ahead.)
    journal = Journal.open(tmp_path / "journal", fsync=FsyncMode.NONE)
    pipeline = Pipeline("sim", TickDBAdapter())
    snap = Snapshotter(
        journal, pipeline, tmp_path / "fastfeed.db", fsync=FsyncMode.ALWAYS, venue="sim"
    )
    gen = StreamGenerator(1, "depth", "AAPL.US")

    def append(n: int) -> None:
        for _ in range(n):
            journal.append(RecordKind.INBOUND, 1, 1_000, gen.next())

    async def scenario() -> None:
        append(10)
        durable = journal.sync()
        append(10)  # accepted, not yet durable
        await snap.derive()
        assert pipeline.derived_lsn == durable == 10
        journal.sync()
        await snap.derive()
        assert pipeline.derived_lsn == 20

    try:
        asyncio.run(scenario())
    finally:
        snap.close()
        journal.close()


def test_the_applier_keeps_one_journal_reader_across_polls_and_rollovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = count_readers(monkeypatch, snapshotter)
    journal = Journal.open(tmp_path / "journal", fsync=FsyncMode.NONE, segment_bytes=8192)
    pipeline = Pipeline("sim", TickDBAdapter())
    snap = Snapshotter(
        journal, pipeline, tmp_path / "fastfeed.db", fsync=FsyncMode.NONE, venue="sim"
    )
    gen = StreamGenerator(1, "depth", "AAPL.US")

    def append(n: int) -> None:
        for _ in range(n):
            journal.append(RecordKind.INBOUND, 1, 1_000, gen.next())

    async def scenario() -> None:
        for _ in range(30):
            append(7)
            await snap.derive()
            assert pipeline.derived_lsn == journal.accepted_lsn
        assert journal.write_offset[0] >= 3  # rolled over while the reader followed
        assert opened == [1]
        # fed elsewhere (start-up replay does that): the next poll starts after it
        payload = gen.next()
        lsn = journal.append(RecordKind.INBOUND, 1, 1_000, payload)
        pipeline.feed(lsn, RecordKind.INBOUND, 1_000, payload)
        append(5)
        await snap.derive()
        assert pipeline.derived_lsn == journal.accepted_lsn
        assert opened == [1, lsn + 1]

    try:
        asyncio.run(scenario())
    finally:
        snap.close()
        journal.close()
