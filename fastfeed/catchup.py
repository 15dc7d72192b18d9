"""Bringing SQLite level with the journal: for real at recorder start-up, in memory for readers.

* ``replay_into`` (the recorder, holding the journal lock): feed the journal records after
  SQLite's applied LSN through the pipeline and commit them, so SQLite and the tracker are
  where they were before the stop.
* ``open_view`` (``status``, ``gaps``, ``export``): the same derivation, kept in memory as a
  pending batch that the store's readers answer with. It takes no lock and writes nothing, so
  it runs beside a recorder, on a read-only copy, and never keeps a recorder from starting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from fastfeed import defaults
from fastfeed.datadir import JOURNAL_DIR, STORE_FILE
from fastfeed.derive.pipeline import Pipeline
from fastfeed.derive.streams import Gap
from fastfeed.errors import StoreError
from fastfeed.journal import Break, Journal, RecordKind, end_of_log, read_journal, scan_journal
from fastfeed.store import Batch, MessageRow, SnapshotRow, Store, StreamCheckpoint
from fastfeed.venues import adapter_for
from fastfeed.venues.tickdb import TickDBAdapter

__all__ = ["BatchSink", "View", "open_view", "replay_into", "venue_of"]

log = logging.getLogger("fastfeed.catchup")
T = TypeVar("T")


class BatchSink(Protocol):
    """Where start-up replay commits its batches (the recorder's snapshotter)."""

    store: Store
    applied_lsn: int

    def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run ``fn(*args)`` on the store's thread and wait."""
        ...

    def flush_blocking(self, batch: Batch | None) -> None:
        """Commit ``batch`` (None: nothing new) and advance ``applied_lsn``."""
        ...


def replay_into(journal: Journal, pipeline: Pipeline, sink: BatchSink) -> int:
    """Restore the pipeline from SQLite's checkpoint, then replay later journal records.

    Returns how many journal records were replayed. Exactly once: the checkpoint and the rows
    were committed together with ``applied_lsn``, and replay starts right after it.
    """
    store = sink.store
    applied = sink.applied_lsn
    if applied > journal.accepted_lsn:
        raise StoreError(
            f"SQLite has applied journal LSN {applied} but the journal ends at "
            f"{journal.accepted_lsn}: records SQLite saw are gone (fsync none and a power cut?)",
            hint=f"move {STORE_FILE} aside to rebuild it from the journal",
        )
    pipeline.restore(sink.call(store.load_tracker_state), sink.call(store.counters), applied)
    journal.sync()  # recovered records become durable before SQLite may claim them
    records = journal.read(applied + 1)
    while chunk := records.take(defaults.REPLAY_BATCH_RECORDS):
        pipeline.feed_records(chunk)
        sink.flush_blocking(pipeline.cut())
    pipeline.take_actions()  # gaps seen in replay are resumed by the connect's subscribe
    return pipeline.derived_lsn - applied


@dataclass(slots=True)
class View:
    """A data dir as read-only commands see it: SQLite plus what the journal holds past it."""

    store: Store
    pending: Batch | None  # derived from the journal past SQLite's applied LSN, in memory
    notes: list[str] = field(default_factory=list)  # damage found, said on stderr

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def venue_of(store: Store, journal_dir: Path) -> str:
    """The venue a data dir records: SQLite's label, else the one its recorder journaled at
    start (the first control record), else tickdb (journals older than that record's field)."""
    venue = store.venue()
    if venue is not None or not journal_dir.is_dir():
        return venue or TickDBAdapter.name
    for record in read_journal(journal_dir):
        if record.kind == RecordKind.CONTROL:
            try:
                doc = orjson.loads(record.payload)
            except orjson.JSONDecodeError:
                doc = None
            named = doc.get("venue") if isinstance(doc, dict) else None
            return named if isinstance(named, str) else TickDBAdapter.name
    return TickDBAdapter.name


def open_view(data_dir: Path, *, messages: bool) -> View:
    """Open ``data_dir`` read-only and derive the journal's records past SQLite in memory.

    ``messages``: keep the derived message rows (``export``); without it only the stream
    totals and gaps are kept, so memory stays flat however far SQLite is behind.

    Raises:
        StoreError: unreadable SQLite, or (``messages``) more un-snapshotted journal than
            ``defaults.VIEW_PENDING_BYTES`` (the hint says how to catch SQLite up).
    """
    db = data_dir / STORE_FILE
    store = Store.open(db, readonly=True) if db.exists() else Store.empty()
    try:
        view = _derive(data_dir / JOURNAL_DIR, store, messages=messages)
    except BaseException:
        store.close()
        raise
    return view


def _derive(journal_dir: Path, store: Store, *, messages: bool) -> View:
    # Every answer comes from this one committed state: a recorder committing meanwhile must
    # not add rows the pending batch also holds.
    store.begin_read()
    applied = store.applied_lsn()
    view = View(store, None)
    if not journal_dir.is_dir():
        return view
    venue = venue_of(store, journal_dir)
    pipeline = Pipeline(venue, adapter_for(venue))
    pipeline.restore(store.load_tracker_state(), store.counters(), applied)
    pending = _Pending(applied, keep_messages=messages)
    # Up to the log's end as of now: a recorder appending faster than this derives would
    # otherwise keep a read-only command chasing the tail and never answering.
    records = read_journal(journal_dir, applied + 1, end_of_log(journal_dir).last_lsn)
    while chunk := records.take(defaults.REPLAY_BATCH_RECORDS):
        pipeline.feed_records(chunk)
        pending.add(pipeline.cut())
    view.pending = pending.batch()
    reached = max(applied, pending.lsn)
    for damage in scan_journal(journal_dir).damage:
        if damage.kind is Break.TORN_TAIL:
            continue  # a crash's half-written last record: the next start trims it
        if damage.after_lsn < applied:
            view.notes.append(f"journal damaged (already in SQLite, answered from it): {damage}")
        else:
            view.notes.append(f"journal damaged: {damage}; this answer stops at LSN {reached}")
    return view


class _Pending:
    """Successive pipeline cuts merged into the one batch they would have committed."""

    def __init__(self, applied_lsn: int, *, keep_messages: bool) -> None:
        self.lsn = applied_lsn
        self._keep = keep_messages
        self._bytes = 0
        self._messages: list[MessageRow] = []
        self._snapshots: list[SnapshotRow] = []
        self._streams: dict[tuple[str, str, str], StreamCheckpoint] = {}
        self._gaps: dict[int, Gap] = {}
        self._counters: dict[str, int] | None = None

    def add(self, batch: Batch | None) -> None:
        if batch is None:
            return
        self.lsn = batch.applied_lsn
        if self._keep:
            self._messages += batch.messages
            self._snapshots += batch.snapshots
            self._bytes += sum(len(m.frame) for m in batch.messages)
            if self._bytes > defaults.VIEW_PENDING_BYTES:
                raise StoreError(
                    f"SQLite is behind the journal by more than {defaults.VIEW_PENDING_BYTES}"
                    " bytes of messages (more than a read-only command derives in memory)",
                    hint="start the recorder on this data dir once: it brings SQLite up to date",
                )
        for s in batch.streams:
            self._streams[(s.venue, s.channel, s.symbol)] = s
        for g in batch.gaps:
            self._gaps[g.gap_id] = g
        self._counters = batch.counters

    def batch(self) -> Batch | None:
        if self._counters is None:
            return None  # nothing past SQLite's applied LSN
        return Batch(
            applied_lsn=self.lsn,
            messages=self._messages,
            books=[],
            gaps=list(self._gaps.values()),
            streams=list(self._streams.values()),
            tracker_state=None,
            subscriptions=None,
            counters=self._counters,
            snapshots=self._snapshots,
        )
