"""The applier: derives rows from the journal in batches and commits them to SQLite.

The frame path only journals; this reads the journal back after the pipeline's last LSN, at
most ``batch_records`` records at a time, feeds them to the pipeline, cuts a batch and commits
it on SQLite's own thread. When ingest outruns SQLite the journal holds the difference: rows
exist in memory for one batch only, whatever the lag.

While the feed bursts, the live applier holds off for a bounded time and lag
(``DERIVE_DEFER_*`` in fastfeed/defaults.py): deriving shares the event loop (and the GIL) with
the frame sink, so the burst is taken in first and derived right after it.

Ordering argument: a batch is cut on the event loop (so it is exactly the pipeline's state after
LSN N), then the applier waits until the journal is durable up to N, and only then commits
the batch together with ``applied_lsn = N``. SQLite therefore never claims an LSN the journal
could lose in a power cut, and a restart replays exactly the records after ``applied_lsn``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastfeed import defaults
from fastfeed.derive.pipeline import Actions, Pipeline
from fastfeed.errors import StoreError
from fastfeed.journal import FsyncMode, Journal, JournalReader, JournalRecord, read_journal
from fastfeed.publish.cursor import retention_floor
from fastfeed.store import Batch, Store

__all__ = ["Snapshotter"]

log = logging.getLogger("fastfeed.snapshotter")
T = TypeVar("T")


class Snapshotter:
    """Owns the SQLite store and the one worker thread that writes to it."""

    def __init__(
        self,
        journal: Journal,
        pipeline: Pipeline,
        store_path: Path,
        *,
        fsync: FsyncMode,
        venue: str,
        interval_s: float = defaults.SNAPSHOT_INTERVAL_S,
        retention_bytes: int = defaults.RETENTION_BYTES,
        batch_records: int = defaults.APPLY_BATCH_RECORDS,
        on_actions: Callable[[Actions], None] | None = None,
    ) -> None:
        self._journal = journal
        self._pipeline = pipeline
        self._batch_records = batch_records
        self._on_actions = on_actions
        self._wake = asyncio.Event()
        self._reader: JournalReader | None = None
        self._reader_at = 0  # the LSN the reader returns next
        self._fsync = fsync
        self._interval = interval_s
        self._retention = retention_bytes
        # sqlite3 connections belong to the thread that made them: open, use and close the
        # store on this single worker so the event loop never blocks on SQLite.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="snapshot")
        self.store: Store = self._worker.submit(Store.open, store_path, venue=venue).result()
        self.applied_lsn = self._worker.submit(self.store.applied_lsn).result()
        # One flush at a time: shutdown's final flush can start while the periodic one waits
        # for durability, and batches must reach SQLite in the order they were cut.
        self._flushing = asyncio.Lock()
        self._abandoned = False
        # Burst deferral: the journal's accepted LSN when last looked at, and when; whether a
        # hold-off ran out of time or lag (none again until the applier has caught up).
        self._seen = (time.monotonic(), journal.accepted_lsn)
        self._held_out = False
        self._stop: asyncio.Event | None = None  # run()'s: a stop ends a hold-off

    def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run ``fn(*args)`` on the store's thread and wait (for start-up and shutdown only)."""
        return self._worker.submit(fn, *args).result()

    def wake(self) -> None:
        """Derive now rather than at the next interval (a frame Python must look at came in)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``interval_s`` or when woken, until ``stop`` is set (the final flush is
        the owner's)."""
        self._stop = stop
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waking = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait(
                        {waking, stopping}, timeout=self._interval, return_when="FIRST_COMPLETED"
                    )
                finally:
                    waking.cancel()
                self._wake.clear()
                if not stop.is_set():
                    await self.flush(defer=True)
        finally:
            stopping.cancel()

    def _next_records(self, limit: int) -> list[JournalRecord]:
        """Up to ``limit`` journal records after the pipeline's last, from one reader kept
        open: it continues where it stopped instead of finding its place in the segment again
        at every call."""
        want = self._pipeline.derived_lsn + 1
        if self._reader is None or self._reader_at != want:
            # The first call, or the pipeline was fed elsewhere: start after its last record.
            if self._reader is not None:
                self._reader.close()
            self._reader, self._reader_at = read_journal(self._journal.directory, want), want
        # --fsync always promises nothing is processed before it is durable; the sink
        # syncs a read while taking in the next, so accepted may run ahead of durable.
        journal = self._journal
        upto = journal.durable_lsn if self._fsync is FsyncMode.ALWAYS else journal.accepted_lsn
        out = self._reader.take(limit, upto)
        if out:
            self._reader_at = out[-1].lsn + 1
        if self._reader.damage is not None:
            self._reader.close()  # it stays stopped there: the next call looks again
            self._reader = None
        return out

    def _ingest_rate(self) -> float:
        """Records/s journaled since the last call. Between two derive chunks that span is a
        loop turn, so one large socket read can start a hold-off; measuring over 20 ms or more
        instead started them late in a burst and cost ingest (none 0.66x -> 0.57x of the
        transport, same run), and a wake ends a hold-off anyway."""
        now, accepted = time.monotonic(), self._journal.accepted_lsn
        then, before = self._seen
        self._seen = (now, accepted)
        return (accepted - before) / max(now - then, 1e-6)

    async def _hold_off_burst(self) -> None:
        """While records arrive faster than ``DERIVE_DEFER_RATE``, leave the loop to the frame
        sink; at most ``DERIVE_DEFER_MAX_S`` and ``DERIVE_DEFER_MAX_RECORDS`` behind, and not
        past a wake (a frame Python must look at) or a stop."""
        if self._held_out or self._ingest_rate() < defaults.DERIVE_DEFER_RATE:
            return
        until = time.monotonic() + defaults.DERIVE_DEFER_MAX_S
        while not (
            self._abandoned
            or self._wake.is_set()
            or (self._stop is not None and self._stop.is_set())
        ):
            behind = self._journal.accepted_lsn - self._pipeline.derived_lsn
            if not behind:
                return  # nothing to derive yet
            if time.monotonic() >= until or behind >= defaults.DERIVE_DEFER_MAX_RECORDS:
                self._held_out = True
                return
            await asyncio.sleep(defaults.DERIVE_DEFER_CHECK_S)
            if self._ingest_rate() < defaults.DERIVE_DEFER_RATE:
                return

    async def derive(self, *, defer: bool = False) -> None:
        """Feed the pipeline the next journal records, at most one batch of them.

        In chunks with a turn of the event loop between them: the socket keeps being read.
        With ``defer`` (the live applier), each chunk first waits out a burst.
        """
        fed = 0
        while fed < self._batch_records:
            if defer:
                await self._hold_off_burst()
            records = self._next_records(
                min(defaults.DERIVE_CHUNK_RECORDS, self._batch_records - fed)
            )
            if not records:
                self._held_out = False  # caught up: the next burst may be held off again
                break
            self._pipeline.feed_records(records)
            fed += len(records)
            actions = self._pipeline.take_actions()
            if self._on_actions is not None:
                self._on_actions(actions)
            await asyncio.sleep(0)

    async def flush(self, *, defer: bool = False) -> int:
        """Derive and commit batches until SQLite has every record journaled so far.

        ``defer``: hold off while the feed bursts (the live applier; shutdown's final flush
        never does). Returns the applied LSN.
        """
        async with self._flushing:
            while not self._abandoned:
                await self.derive(defer=defer)
                batch = self._pipeline.cut()
                if batch is None:
                    break
                if self._fsync is not FsyncMode.NONE:
                    await self._journal.wait_durable(batch.applied_lsn)
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(self._worker, self._apply_and_retire, batch)
                except StoreError:
                    if self._abandoned:
                        break  # interrupted on purpose: rolled back, not failed
                    raise
                self.applied_lsn = batch.applied_lsn
            return self.applied_lsn

    def _apply_and_retire(self, batch: Batch) -> None:
        if self._abandoned:  # abandoned while this waited for the store's thread
            raise StoreError("snapshot abandoned at shutdown")
        self.store.apply(batch)
        # Segments wholly below the applied LSN are in SQLite now; keep the newest
        # retention_bytes anyway (repair, verify, rebuilding SQLite), delete the rest, but
        # never what a publisher has not had acknowledged yet (fastfeed/publish/cursor.py).
        floor = retention_floor(self._journal.directory.parent)
        upto = batch.applied_lsn if floor is None else min(batch.applied_lsn, floor)
        self._journal.release_before(upto, keep_bytes=self._retention)

    def abandon(self) -> None:
        """Shutdown ran out of time: abort the SQLite transaction in flight and start no other.

        The rolled-back rows are still in the journal, after ``applied_lsn``: the next start
        derives them again.
        """
        self._abandoned = True
        self.store.abort()

    def flush_blocking(self, batch: Batch | None) -> None:
        """Commit a batch from outside the event loop (start-up replay)."""
        if batch is not None:
            self.call(self.store.apply, batch)
            self.applied_lsn = batch.applied_lsn

    def close(self) -> None:
        """Unmap the journal reader, close the store on its thread and stop the thread."""
        if self._reader is not None:
            self._reader.close()
        self.call(self.store.close)
        self._worker.shutdown(wait=True)
