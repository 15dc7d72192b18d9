"""Start-up recovery: bring SQLite level with the journal by replaying what it has not applied."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fastfeed.derive.pipeline import Pipeline
from fastfeed.errors import JournalLocked, StoreError
from fastfeed.journal import Journal
from fastfeed.venues import adapter_for

if TYPE_CHECKING:
    from fastfeed.recorder.snapshotter import Snapshotter

__all__ = ["REPLAY_BATCH_RECORDS", "catch_up", "replay_into", "venue_of"]

log = logging.getLogger("fastfeed.catchup")

REPLAY_BATCH_RECORDS = 50_000  # one SQLite transaction per this many replayed records


def replay_into(journal: Journal, pipeline: Pipeline, snapshotter: Snapshotter) -> int:
    """Restore the pipeline from SQLite's checkpoint, then replay later journal records.

    Returns how many journal records were replayed. Exactly once: the checkpoint and the rows
    were committed together with ``applied_lsn``, and replay starts right after it.
    """
    store = snapshotter.store
    applied = snapshotter.applied_lsn
    if applied > journal.accepted_lsn:
        raise StoreError(
            f"SQLite has applied journal LSN {applied} but the journal ends at "
            f"{journal.accepted_lsn}: records SQLite saw are gone (fsync none and a power cut?)",
            hint="move fastfeed.db aside to rebuild it from the journal",
        )
    pipeline.restore(
        snapshotter.call(store.load_tracker_state), snapshotter.call(store.counters), applied
    )
    journal.sync()  # recovered records become durable before SQLite may claim them
    replayed = 0
    for record in journal.read(applied + 1):
        pipeline.feed(record.lsn, record.kind, record.recv_ns, record.payload, record.flags)
        replayed += 1
        if replayed % REPLAY_BATCH_RECORDS == 0:
            snapshotter.flush_blocking(pipeline.cut())
    snapshotter.flush_blocking(pipeline.cut())
    pipeline.resync.clear()  # gaps seen in replay are resumed by the connect's subscribe
    return replayed


def catch_up(data_dir: Path) -> int:
    """Replay un-snapshotted journal records when no recorder is running; returns the count.

    Used by the read-only commands so a data dir copied after a crash shows everything its
    journal holds. While a recorder runs it holds the journal lock and keeps SQLite current.
    """
    from fastfeed.journal import FsyncMode
    from fastfeed.recorder.snapshotter import Snapshotter

    journal_dir = data_dir / "journal"
    if not journal_dir.is_dir():
        return 0
    try:
        journal = Journal.open(journal_dir, fsync=FsyncMode.NONE)
    except JournalLocked:
        return 0
    with journal:
        venue = venue_of(data_dir)
        pipeline = Pipeline(venue, adapter_for(venue))
        snapshotter = Snapshotter(
            journal, pipeline, data_dir / "fastfeed.db", fsync=FsyncMode.NONE, venue=venue
        )
        try:
            replayed = replay_into(journal, pipeline, snapshotter)
        finally:
            snapshotter.close()
    if replayed:
        log.info("caught up: %d journal records applied to SQLite", replayed)
    return replayed


def venue_of(data_dir: Path) -> str:
    """The venue a data dir records, from its SQLite file (tickdb when there is none yet)."""
    from fastfeed.store import Store

    store = (
        Store.open(data_dir / "fastfeed.db", readonly=True)
        if (data_dir / "fastfeed.db").exists()
        else None
    )
    if store is None:
        return "tickdb"
    try:
        return store.venue() or "tickdb"
    finally:
        store.close()
