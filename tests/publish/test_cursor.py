"""The cursor file: durable replace, clear errors, and the retention floor it gives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fastfeed.datadir import prepare_data_dir
from fastfeed.derive.pipeline import Pipeline
from fastfeed.errors import ConfigError
from fastfeed.journal import FsyncMode, Journal, RecordKind, read_journal
from fastfeed.publish.cursor import (
    Cursor,
    cursor_path,
    load_cursor,
    retention_floor,
    save_cursor,
)
from fastfeed.recorder.snapshotter import Snapshotter
from fastfeed.sim.content import StreamGenerator
from fastfeed.venues.tickdb import TickDBAdapter


def test_save_and_load(tmp_path: Path) -> None:
    path = cursor_path(tmp_path, "MD")
    assert load_cursor(path) == Cursor()
    cur = Cursor(41, 17, "2026-01-01T00:00:00+00:00", {"format": 2})
    save_cursor(path, cur)
    assert load_cursor(path) == cur
    assert [p.name for p in path.parent.iterdir()] == ["MD.cursor"]  # no temp left behind


@pytest.mark.parametrize("text", [b"{", b"[]", b'{"acked_lsn": 1}'])
def test_a_damaged_cursor_is_a_clear_error(tmp_path: Path, text: bytes) -> None:
    path = cursor_path(tmp_path, "MD")
    path.parent.mkdir()
    path.write_bytes(text)
    with pytest.raises(ConfigError, match="delete it to reconcile"):
        load_cursor(path)
    assert retention_floor(tmp_path) == 1  # keep everything until someone looks


def test_stream_names_nats_refuses_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--stream"):
        cursor_path(tmp_path, "md.all")


def test_retention_floor_is_the_lowest_cursor(tmp_path: Path) -> None:
    assert retention_floor(tmp_path) is None
    save_cursor(cursor_path(tmp_path, "A"), Cursor(acked_lsn=900))
    save_cursor(cursor_path(tmp_path, "B"), Cursor(acked_lsn=300))
    assert retention_floor(tmp_path) == 301


@pytest.mark.parametrize("published", [None, 500])
def test_retention_keeps_what_is_unpublished(tmp_path: Path, published: int | None) -> None:
    data = prepare_data_dir(tmp_path / "data")
    if published is not None:
        save_cursor(cursor_path(data, "MD"), Cursor(acked_lsn=published))
    gen = StreamGenerator(1, "trade", "BTC.CC")
    with Journal.open(data / "journal", segment_bytes=16 * 1024) as j:
        pipeline = Pipeline("tickdb", TickDBAdapter())
        for _ in range(2000):
            lsn = j.append(RecordKind.INBOUND, 1, 1, gen.next())
            pipeline.feed(lsn, RecordKind.INBOUND, 1, next(j.read(lsn)).payload)
        j.sync()
        snap = Snapshotter(
            j,
            pipeline,
            data / "fastfeed.db",
            fsync=FsyncMode.NONE,
            venue="tickdb",
            retention_bytes=0,
        )
        try:
            asyncio.run(snap.flush())
        finally:
            snap.close()
        first = next(iter(read_journal(data / "journal"))).lsn
    if published is None:
        assert first > 1000  # SQLite has it all: retention deleted old segments
    else:
        assert 1 < first <= published + 1  # deleted up to the cursor, not past it
