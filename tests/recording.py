"""A small real data dir built in-process: simulator frames journaled, then SQLite caught up.

The same path a recorder takes after a crash (journal first, SQLite derived by its start-up
``replay_into``), so verify and export tests run against exactly what the recorder writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from fastfeed.catchup import replay_into
from fastfeed.datadir import STORE_FILE, prepare_data_dir
from fastfeed.derive.pipeline import Pipeline
from fastfeed.journal import FsyncMode, Journal, JournalReader, RecordKind, read_journal
from fastfeed.recorder.snapshotter import Snapshotter
from fastfeed.sim.content import StreamGenerator
from fastfeed.venues.tickdb import TickDBAdapter

__all__ = ["T0_NS", "build", "catch_up", "recv_ns"]

T0_NS = 1_732_406_400_000_000_000  # 2024-11-24T00:00:00Z
SEGMENT_BYTES = 64 * 1024  # small, so a few hundred frames span several segments


def recv_ns(lsn: int) -> int:
    """The receive time given to the record at ``lsn``: one millisecond apart."""
    return T0_NS + lsn * 1_000_000


def build(
    data: Path,
    streams: dict[tuple[str, str], int],
    *,
    skip: dict[tuple[str, str], int] | None = None,
) -> Path:
    """Journal ``n`` seqs of each (channel, symbol), interleaved, then derive SQLite.

    ``skip`` leaves one seq of a stream out (a real hole the tracker records as an open gap).
    """
    umask = os.umask(0o077)  # prepare_data_dir sets it for the whole process: restored below
    try:
        return _build(data, streams, skip)
    finally:
        os.umask(umask)


def _build(
    data: Path, streams: dict[tuple[str, str], int], skip: dict[tuple[str, str], int] | None
) -> Path:
    prepare_data_dir(data)
    gens = {key: StreamGenerator(1, *key) for key in streams}
    with Journal.open(data / "journal", segment_bytes=SEGMENT_BYTES, fsync=FsyncMode.NONE) as j:
        for seq in range(1, max(streams.values()) + 1):
            for key, gen in gens.items():
                if seq > streams[key]:
                    continue
                frame = gen.next()
                if skip and skip.get(key) == seq:
                    continue
                j.append(RecordKind.INBOUND, 1, recv_ns(j.accepted_lsn + 1), frame)
        catch_up(data, j)
    return data


def catch_up(data: Path, journal: Journal) -> int:
    """Apply the journal's records past SQLite's applied LSN, as a recorder's start does."""
    pipeline = Pipeline(TickDBAdapter.name, TickDBAdapter())
    snapshotter = Snapshotter(
        journal, pipeline, data / STORE_FILE, fsync=FsyncMode.NONE, venue=TickDBAdapter.name
    )
    try:
        return replay_into(journal, pipeline, snapshotter)
    finally:
        snapshotter.close()


def count_readers(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[int]:
    """Make ``module.read_journal`` note the LSN each reader it opens starts at; that list."""
    opened: list[int] = []

    def counting(directory: Path, from_lsn: int = 1) -> JournalReader:
        opened.append(from_lsn)
        return read_journal(directory, from_lsn)

    monkeypatch.setattr(module, "read_journal", counting)
    return opened
