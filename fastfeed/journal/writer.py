"""The write-ahead journal: append every frame durably before anything parses it.

``Journal.open(directory)`` takes the journal directory itself (the recorder passes
``<data-dir>/journal``): it holds ``LOCK`` and the ``seg-<index>.wal`` segments. The on-disk format
is in docs/architecture.md; the per-record work is in fastfeed/journal/_wal.pyx.

Durability modes (``FsyncMode``):

* GROUP (default): a commit thread syncs what was appended every ``group_commit_ms`` (sooner
  when more than ``group_commit_bytes`` are waiting, at once after an idle spell) and publishes
  ``durable_lsn``; ``wait_durable`` resolves from it.
* ALWAYS: ``append`` syncs before it returns: slow, but every returned LSN is durable. The
  frame sink appends a socket read's frames unsynced and calls ``sync_soon``: the commit thread
  syncs the read while the loop takes in the next one, and ``when_durable`` tells the sink when
  the read's frames may be processed.
* NONE: never syncs until ``sync()``/``close()``. Survives a process crash (the kernel still has
  the pages), not a power loss.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from fastfeed.defaults import (
    COMMIT_LATENCY_BUCKETS_S,
    GROUP_COMMIT_BYTES,
    GROUP_COMMIT_MS,
    MIN_FREE_BYTES,
    SEGMENT_BYTES,
)
from fastfeed.errors import DiskFull, JournalError, JournalSyncError, RecordTooLarge
from fastfeed.histogram import Histogram
from fastfeed.journal._wal import HEADER_BYTES, RECORD_HEADER_BYTES, Segment, WalWriter
from fastfeed.journal.reader import JournalReader, read_journal
from fastfeed.journal.recovery import RecoveryReport, recover
from fastfeed.journal.segments import (
    create_segment,
    fsync_dir,
    list_segments,
    lock_directory,
    max_payload,
    remove_stale_temps,
    segment_path,
    sync_segment,
)
from fastfeed.journal.waiters import DurableWaiters

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["FsyncMode", "Journal", "SyncHook"]

SyncHook = Callable[[str, int, int], int]
_P = ParamSpec("_P")
_J = TypeVar("_J", bound="Journal")
_NEVER = 2**64 - 1  # wake threshold meaning "do not wake the commit thread"
# How far past the append position the commit thread faults pages in after a sync: more than
# one group window of appends at the transport's rate (about 1.4 MB per 2 ms here).
PREFAULT_BYTES = 2 << 20
# ... but at most this much a commit: the commit lock is held meanwhile (64 pages: ~1-2 ms at
# worst here, 512 took up to 30 ms after a rollover), and the appender faults in what is left.
PREFAULT_STEP_BYTES = 256 << 10
# GROUP: how long the commit thread keeps polling once a period after the last append before
# it sleeps until an append wakes it (see Journal._run).
IDLE_AFTER_S = 0.2


class FsyncMode(enum.StrEnum):
    """When appended records are made durable (see the module docstring)."""

    GROUP = "group"
    ALWAYS = "always"
    NONE = "none"


class Journal:
    """The single writer of a journal directory; create it with ``Journal.open``.

    It holds the Cython ``WalWriter`` that frames every record (``writer``; the recorder's
    frame sink appends through it directly) and owns everything around it: segments,
    recovery, the lock and the commit and preparer threads.
    """

    recovery: RecoveryReport

    @classmethod
    def open(cls: Callable[_P, _J], *args: _P.args, **kwargs: _P.kwargs) -> _J:
        """Open the journal in a directory: ``Journal(...)`` under the name callers read.

        ``__init__`` owns the options, their defaults and what is raised; this takes exactly
        its parameters (checked by mypy), so the list is written once.
        """
        return cls(*args, **kwargs)

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        fsync: FsyncMode | str = FsyncMode.GROUP,
        group_commit_ms: float = GROUP_COMMIT_MS,
        group_commit_bytes: int = GROUP_COMMIT_BYTES,
        min_free_bytes: int = MIN_FREE_BYTES,
        repair: bool = False,
        sync_hook: SyncHook | None = None,
    ) -> None:
        """Lock ``directory``, recover the log in it and start the commit thread.

        Raises:
            JournalLocked: another process is writing this journal.
            JournalCorrupt: damage followed by valid records, and ``repair`` is False.
            JournalFormatError: a segment of another format version.
            DiskFull: no segment exists yet and there is no room to create one.
        """
        if segment_bytes % 8 or not 4096 <= segment_bytes < 2**32:
            raise ValueError(
                f"segment_bytes {segment_bytes} must be a multiple of 8 in [4 KiB, 4 GiB)"
            )
        mode = FsyncMode(fsync)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = lock_directory(directory)
        self._dir: Path = directory
        self._lock_fd = lock_fd
        self._w = WalWriter()
        self._segment_bytes = segment_bytes
        self._mode = mode
        self._period_s = group_commit_ms / 1000.0
        self._group_bytes = group_commit_bytes
        self._min_free = min_free_bytes
        self._hook = sync_hook
        self._repair = repair
        self._durable = 0
        self._failure: JournalError | None = None
        self._closed = False
        self._stopping = False
        self._commit_lock = threading.Lock()
        self._prep_lock = threading.Lock()
        self._event = threading.Event()  # wakes the commit thread
        self._prep_wanted = threading.Event()  # wakes the segment preparer
        self._waiters = DurableWaiters()
        self._prep_error: Exception | None = None
        self._unsynced_paths: list[tuple[str, int, int]] = []  # NONE mode: retired, not synced
        self.commit_seconds = Histogram(COMMIT_LATENCY_BUCKETS_S)  # time each commit's syncs took
        self.sync_errors = 0  # failed syncs (the first one is fatal: never retried)
        try:
            self._start()
        except BaseException:
            os.close(lock_fd)
            raise

    def _start(self) -> None:
        """Recover, install the segment to append to, make the recovered log durable."""
        remove_stale_temps(self._dir)
        rec = recover(self._dir, repair=self._repair, sync=self._sync_range)
        self.recovery = rec.report
        self._first_lsns = rec.first_lsns
        segments = rec.segments
        try:
            if not segments:
                create_segment(self._dir, 0, self._segment_bytes, self._min_free)
                segments = [Segment(str(segment_path(self._dir, 0)), writable=True)]
                rec.resume, rec.offset = 0, HEADER_BYTES
            if rec.report.last_lsn:
                # Rides on the sync below: recovery may have cut the log below an older mark.
                segments[rec.resume].set_durable_mark(rec.report.last_lsn)
            # The recovered records were accepted by the last writer but maybe never synced
            # (a process crash leaves them in the page cache): sync them before calling them
            # durable.
            for seg in segments[: rec.resume + 1]:
                end = seg.extent(HEADER_BYTES) if seg is not segments[rec.resume] else rec.offset
                if end > HEADER_BYTES:
                    self._sync_range(seg, HEADER_BYTES, end)
        except BaseException:
            for seg in segments:
                seg.close()
            raise
        current = segments[rec.resume]
        for seg in segments:
            if seg is not current:
                seg.close()
        # Segments after the current one hold nothing (recovery zeroed them). One prepared by
        # a run with another segment size is replaced: rollover must get the size it expects.
        stale = [s.path for s in segments[rec.resume + 1 :] if s.size != self._segment_bytes]
        for path in stale:
            os.unlink(path)
        if stale:
            fsync_dir(self._dir)
        self._w._install(current, rec.offset, rec.report.last_lsn + 1)
        self._durable = rec.report.last_lsn
        self._w._writer_setup(
            self._mode is FsyncMode.ALWAYS, self._event.set, self._rollover, self._commit
        )
        self._thread = threading.Thread(
            target=self._run, name=f"journal-commit:{self._dir}", daemon=True
        )
        # Its own thread: zero-filling a 64 MiB segment takes long enough that doing it on the
        # commit thread would hold up durability for every record appended meanwhile.
        self._preparer = threading.Thread(
            target=self._prepare_run, name=f"journal-prepare:{self._dir}", daemon=True
        )
        self._thread.start()
        self._preparer.start()

    # --- the commit thread ----------------------------------------------------------------

    def _run(self) -> None:
        """Commit thread: sync per the mode until closed."""
        # GROUP: periods in a row with nothing appended. While a feed is live the thread keeps
        # looking once a period instead of having the next append wake it: a wake is a Python
        # call (Event.set, a futex wake) on the appending thread, 2-10 µs inside the frame
        # sink. Only after IDLE_AFTER_S of silence does it sleep until woken.
        empty = 0
        idle_after = max(1, round(IDLE_AFTER_S / self._period_s)) if self._period_s > 0 else 1
        while not self._stopping:
            if self._mode is not FsyncMode.GROUP:
                self._event.wait()
                self._event.clear()
                if self._mode is FsyncMode.NONE:
                    self._release_retired()
                elif self._w.unsynced_bytes and not self._stopping:
                    self._commit_here()  # ALWAYS: a read the sink asked to have synced
                    self._prefault()
                continue
            w = self._w
            if w.unsynced_bytes == 0 and empty >= idle_after:
                # Idle: sleep until the first append (it sees the 0 threshold and wakes us).
                w._arm(0)
                if w.unsynced_bytes == 0:
                    self._event.wait()
            else:
                # Busy: batch for one period, or less if group_commit_bytes pile up.
                w._arm(self._group_bytes)
                if w.unsynced_bytes <= self._group_bytes:
                    self._event.wait(self._period_s)
            self._event.clear()
            w._arm(_NEVER)
            if self._stopping:
                break
            if w.unsynced_bytes == 0:
                empty += 1
                continue
            empty = 0
            self._commit_here()
            self._prefault()

    def _commit_here(self) -> None:
        """Commit on the commit thread: a failure is recorded, never raised out of the thread."""
        try:
            self._commit()
        except JournalError:
            pass  # recorded in self._failure; appends and waiters now raise it
        except Exception as exc:  # a bug must not silently stop durability
            self._set_failure(
                JournalSyncError(f"journal commit thread failed: {exc!r}", errno=errno.EIO)
            )

    def _prefault(self) -> None:
        """After a commit published: fault in the pages the next appends go to, so the event
        loop does not (``WalWriter._prefault``)."""
        with self._commit_lock:
            self._w._prefault(PREFAULT_BYTES, PREFAULT_STEP_BYTES)

    def _set_failure(self, exc: JournalError) -> None:
        """Make ``exc`` the answer to every later append, sync and wait_durable."""
        self._failure = exc
        self._w._fail(exc)
        self._notify_waiters()

    def _prepare_run(self) -> None:
        """Preparer thread: keep the segment after the current one ready until closed."""
        while True:
            self._prepare_next()  # first, so even a short-lived journal leaves one ready
            if self._stopping:
                return
            self._prep_wanted.wait()
            self._prep_wanted.clear()

    def _prepare_next(self) -> None:
        """Create the segment after the current one now, so rollover finds it ready."""
        index = self.write_offset[0] + 1
        if self._prep_error is not None or segment_path(self._dir, index).exists():
            return
        with self._prep_lock:
            try:
                create_segment(self._dir, index, self._segment_bytes, self._min_free)
            except (DiskFull, OSError) as exc:
                # Not fatal yet: rollover retries and raises it to the appender if still so.
                self._prep_error = exc

    def _release_retired(self) -> None:
        """NONE mode: unmap segments rolled away from, remembering them for the final sync."""
        _, ranges = self._w._take_retired()
        for seg, start, end in ranges:
            self._unsynced_paths.append((seg.path, start, end))
            seg.close()

    # --- syncing ----------------------------------------------------------------------------

    def _sync_range(self, seg: Segment, start: int, end: int) -> None:
        """Make [start, end) of ``seg`` durable, through the test hook if one was given."""
        self._sync_path(seg.path, start, end, seg)

    def _sync_path(self, path: str, start: int, end: int, seg: Segment | None) -> None:
        rc = sync_segment(path, start, end, seg, self._hook)
        if rc:
            raise JournalSyncError(
                f"syncing journal segment {path} bytes [{start}, {end}) failed: {os.strerror(rc)}",
                errno=rc,
                hint="the disk may have dropped writes; check it, then restart (recovery"
                " keeps what is valid)",
            )

    def _commit(self) -> int:
        """Sync everything accepted so far and publish it as durable; return durable_lsn."""
        with self._commit_lock:
            if self._failure is not None:
                raise self._failure
            current = self._w.segment
            lsn, ranges = self._w._take_unsynced()
            started = time.perf_counter()
            try:
                for path, start, end in self._unsynced_paths:
                    self._sync_path(path, start, end, None)
                self._unsynced_paths = []
                for seg, start, end in ranges:
                    self._sync_range(seg, start, end)
            except JournalSyncError as exc:
                self.sync_errors += 1
                # Fatal: after a failed fsync Linux may have marked the pages clean, so a
                # retry could "succeed" without the data. Never retry, never advance.
                self._set_failure(exc)
                raise
            if ranges:
                self.commit_seconds.observe(time.perf_counter() - started)
            for seg, _, _ in ranges:
                if seg is not current:
                    seg.close()  # rolled away from before this commit, now synced: done
            if lsn > self._durable:
                self._durable = lsn
            if ranges and current is not None:
                # Stored now, on disk with the next sync: recovery tells a power cut's torn
                # tail (damage past the mark) from disk damage (before it) by this.
                current.set_durable_mark(self._durable)
        self._notify_waiters()
        return lsn

    # --- rollover ---------------------------------------------------------------------------

    def _rollover(self, total: int) -> None:
        """Called by append when a ``total``-byte record does not fit: move to a new segment."""
        if self._closed:
            raise JournalError(f"journal {self._dir} is closed")
        size, limit = total - RECORD_HEADER_BYTES, max_payload(self._segment_bytes)
        if size > limit:
            raise RecordTooLarge(
                f"record of {size} payload bytes exceeds the maximum {limit} for"
                f" {self._segment_bytes}-byte segments",
                size=size,
                limit=limit,
                hint="use a larger segment size (--segment-mib)",
            )
        index = self.write_offset[0] + 1
        with self._prep_lock:
            create_segment(self._dir, index, self._segment_bytes, self._min_free)
            self._prep_error = None
        seg = Segment(str(segment_path(self._dir, index)), writable=True)
        lsn = self._w.accepted_lsn + 1
        self._first_lsns[index] = lsn
        self._w._install(seg, HEADER_BYTES, lsn)
        self._prep_wanted.set()  # prepare the segment after this one, off the hot path
        self._event.set()  # NONE mode: the commit thread unmaps the segment rolled away from

    # --- waiting for durability -------------------------------------------------------------

    def _notify_waiters(self) -> None:
        """Wake the waiters this commit covers; after failure or close, fail the rest."""
        error: BaseException | None = self._failure
        if error is None and self._closed:
            error = JournalError(f"journal {self._dir} closed")
        self._waiters.release(self._durable, error)

    async def wait_durable(self, lsn: int) -> None:
        """Return once ``durable_lsn >= lsn``.

        Raises:
            JournalSyncError: a sync failed (before or while waiting).
            JournalError: the journal closed before ``lsn`` became durable.
        """
        if lsn > self._durable or self._failure is not None:
            await self.when_durable(lsn)

    def when_durable(self, lsn: int) -> asyncio.Future[None]:
        """A future on the running loop, completed once ``durable_lsn >= lsn``.

        It fails with JournalSyncError when a sync fails, JournalError when the journal closes
        first.

        Raises:
            JournalSyncError: a sync failed already.
        """
        if self._failure is not None:
            raise self._failure
        fut = self._waiters.add(lsn)
        # A commit may have published before the push: complete what it covers now.
        self._notify_waiters()
        return fut

    def sync_soon(self) -> None:
        """ALWAYS mode: have the commit thread sync everything accepted so far, without
        waiting for it (``when_durable`` says when it is done)."""
        self._event.set()

    # --- public surface ---------------------------------------------------------------------

    def append(self, kind: int, stream: int, recv_ns: int, payload: Buffer, flags: int = 0) -> int:
        """Append one record; returns its LSN. The payload is copied before return.

        On return the record is accepted (survives kill -9); in ALWAYS mode also durable.

        Raises:
            JournalError: a sync failed earlier, the disk is full, or the journal is closed.
        """
        return self._w.append(kind, stream, recv_ns, payload, flags)

    @property
    def writer(self) -> WalWriter:
        """The Cython record writer (for the frame sink's C-level append)."""
        return self._w

    @property
    def accepted_lsn(self) -> int:
        """LSN of the last record appended (survives a process crash; 0 if none)."""
        return self._w.accepted_lsn

    @property
    def write_offset(self) -> tuple[int, int]:
        """(segment index, offset) where the next record goes."""
        return self._w.write_offset

    @property
    def segment(self) -> Segment | None:
        """The segment appends currently go to."""
        return self._w.segment

    @property
    def durable_lsn(self) -> int:
        """LSN up to which everything has been synced to disk (survives power loss)."""
        return self._durable

    @property
    def directory(self) -> Path:
        """The journal directory."""
        return self._dir

    def sync(self) -> int:
        """Block until everything appended so far is durable; return durable_lsn.

        Raises:
            JournalSyncError: the sync failed now or earlier.
        """
        if self._closed:
            raise JournalError(f"journal {self._dir} is closed")
        return self._commit()

    def read(self, from_lsn: int = 1, upto_lsn: int | None = None) -> JournalReader:
        """Records from ``from_lsn`` up to ``upto_lsn`` (default and cap: accepted_lsn, as it
        is now: a reader that should follow the log takes with its own bound)."""
        accepted = self.accepted_lsn
        upto = accepted if upto_lsn is None else min(upto_lsn, accepted)
        return read_journal(self._dir, from_lsn, upto)

    def release_before(self, lsn: int, *, keep_bytes: int = 0) -> int:
        """Delete segments whose every record has LSN < ``lsn`` (never the current one).

        ``keep_bytes`` of the newest segments are kept regardless (retention for repair, verify
        and re-deriving SQLite).

        Returns:
            How many segments were deleted.
        """
        current = self.write_offset[0]
        keep_from = current - keep_bytes // self._segment_bytes
        removed = 0
        for index, path in list_segments(self._dir):
            if index >= min(current, keep_from):
                break
            following = self._first_lsns.get(index + 1)
            if following is None or following > lsn:
                break
            os.unlink(path)
            self._first_lsns.pop(index, None)
            removed += 1
        if removed:
            fsync_dir(self._dir)
        return removed

    def close(self) -> None:
        """Final sync (in every mode), stop the commit thread, unmap, release the lock.

        Raises:
            JournalSyncError: the final sync failed (everything is still released).
        """
        if self._closed:
            return
        self._stopping = True
        self._event.set()
        self._prep_wanted.set()
        self._thread.join()
        self._preparer.join()
        try:
            if self._failure is None:
                self._commit()
        finally:
            self._closed = True
            if self._failure is None:
                self._w._fail(JournalError(f"journal {self._dir} is closed"))
            self._w._close_mappings()
            self._notify_waiters()
            os.close(self._lock_fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
