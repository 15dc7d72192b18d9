"""Moves derived rows into SQLite once the journal holds them durably, one transaction a batch.

Ordering argument: a batch is cut on the event loop (so it is exactly the pipeline's state after
LSN N), then the snapshotter waits until the journal is durable up to N, and only then commits
the batch together with ``applied_lsn = N``. SQLite therefore never claims an LSN the journal
could lose in a power cut, and a restart replays exactly the records after ``applied_lsn``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastfeed import defaults
from fastfeed.derive.pipeline import Pipeline
from fastfeed.errors import StoreError
from fastfeed.journal import FsyncMode, Journal
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
    ) -> None:
        self._journal = journal
        self._pipeline = pipeline
        self._fsync = fsync
        self._interval = interval_s
        self._retention = retention_bytes
        # sqlite3 connections belong to the thread that made them: open, use and close the
        # store on this single worker so the event loop never blocks on SQLite.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="snapshot")
        self.store: Store = self._worker.submit(Store.open, store_path, venue=venue).result()
        self.applied_lsn = self._worker.submit(self.store.applied_lsn).result()
        self.batches = 0
        # One flush at a time: shutdown's final flush can start while the periodic one waits
        # for durability, and batches must reach SQLite in the order they were cut.
        self._flushing = asyncio.Lock()
        self._abandoned = False

    def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run ``fn(*args)`` on the store's thread and wait (for start-up and shutdown only)."""
        return self._worker.submit(fn, *args).result()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``interval_s`` until ``stop`` is set (the final flush is the owner's)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._interval)
            except TimeoutError:
                await self.flush()

    async def flush(self) -> int:
        """Commit everything the pipeline derived so far; returns the applied LSN."""
        async with self._flushing:
            if self._abandoned:
                return self.applied_lsn
            batch = self._pipeline.cut()
            if batch is None:
                return self.applied_lsn
            if self._fsync is not FsyncMode.NONE:
                await self._journal.wait_durable(batch.applied_lsn)
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._worker, self._apply_and_retire, batch)
            except StoreError:
                if self._abandoned:
                    return self.applied_lsn  # interrupted on purpose: rolled back, not failed
                raise
            self.applied_lsn = batch.applied_lsn
            self.batches += 1
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
        """Close the store on its thread and stop the thread."""
        self.call(self.store.close)
        self._worker.shutdown(wait=True)
