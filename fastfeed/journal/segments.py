"""Journal directory layout: segment names, creation and syncing, and the writer lock.

Reading records back is fastfeed/journal/reader.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

from fastfeed.errors import DiskFull, JournalLocked
from fastfeed.journal._wal import (
    HEADER_BYTES,
    MAGIC,
    RECORD_HEADER_BYTES,
    SEGMENT_FORMAT_VERSION,
    Segment,
    zero_fill,
)

__all__ = [
    "create_segment",
    "fsync_dir",
    "list_segments",
    "lock_directory",
    "max_payload",
    "remove_stale_temps",
    "segment_bytes_for",
    "segment_path",
    "sync_segment",
]

_SEGMENT_RE = re.compile(r"^seg-(\d{16})\.wal$")
_TEMP_RE = re.compile(r"^\.seg-\d{16}\.wal\.tmp$")
_HEADER = struct.Struct("<8sIIQQ32x")


def max_payload(segment_bytes: int) -> int:
    """The largest record payload a segment of ``segment_bytes`` holds (one record, alone)."""
    return segment_bytes - HEADER_BYTES - RECORD_HEADER_BYTES


def segment_bytes_for(payload_bytes: int) -> int:
    """The smallest segment size (8-byte aligned) that holds a ``payload_bytes`` record."""
    return (HEADER_BYTES + RECORD_HEADER_BYTES + payload_bytes + 7) & ~7


def segment_path(directory: Path, index: int) -> Path:
    """The final name of segment ``index``: names sort in log order."""
    return directory / f"seg-{index:016d}.wal"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(index, path) of every segment in ``directory``, in index order."""
    found = []
    for name in os.listdir(directory):
        m = _SEGMENT_RE.match(name)
        if m:
            found.append((int(m.group(1)), directory / name))
    found.sort()
    return found


def remove_stale_temps(directory: Path) -> None:
    """Delete half-prepared segments left by a crash (they were never renamed into the log)."""
    for name in os.listdir(directory):
        if _TEMP_RE.match(name):
            os.unlink(directory / name)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so the names created, renamed or removed in it survive power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_directory(directory: Path) -> int:
    """Take the exclusive writer lock ``LOCK``; return its fd (closing it releases the lock)."""
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise JournalLocked(
            f"journal {directory} is in use by another writer (pid {holder})",
            hint="stop the other recorder, or give this one a different --data-dir",
        ) from None
    except BaseException:
        os.close(fd)
        raise
    # The pid is only for the message above; the flock is what excludes.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def create_segment(directory: Path, index: int, size: int, min_free_bytes: int) -> Path:
    """Create segment ``index`` of ``size`` real zero bytes, crash-safely; return its path.

    Raises:
        DiskFull: the filesystem would keep less than ``min_free_bytes`` free, or ran out.
    """
    final = segment_path(directory, index)
    if final.exists():
        return final
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    if free - size < min_free_bytes:
        raise DiskFull(
            f"not creating journal segment {final}: {free} bytes free, need {size} for the"
            f" segment and {min_free_bytes} kept free",
            hint="free disk space, move --data-dir, or lower the minimum free space",
        )
    tmp = directory / f".seg-{index:016d}.wal.tmp"
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:  # no inode left for the file
            raise _disk_full(final, size) from exc
        raise
    try:
        # 1. Write real zeros (not a sparse ftruncate): every block is allocated now, so a
        #    later store into the mapping cannot hit ENOSPC as a SIGBUS, and msync never has
        #    to allocate.
        #    In 64 KiB writes: the page cache's folio size is the write size (_wal.pyx).
        rc = zero_fill(fd, size)
        if rc:
            raise OSError(rc, os.strerror(rc))
        # 2. The header, so the file identifies itself (index, size, format version).
        os.pwrite(fd, _HEADER.pack(MAGIC, SEGMENT_FORMAT_VERSION, HEADER_BYTES, index, size), 0)
        # 3. fsync before the rename: the name must never point at unwritten blocks.
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        os.unlink(tmp)
        if exc.errno == errno.ENOSPC:
            raise _disk_full(final, size) from exc
        raise
    os.close(fd)
    # 4. Rename into the log, then fsync the directory so the new name survives power loss.
    os.rename(tmp, final)
    fsync_dir(directory)
    return final


def _disk_full(final: Path, size: int) -> DiskFull:
    """The error for ENOSPC while creating a segment (no blocks, or no inode for the file)."""
    return DiskFull(
        f"disk full while creating journal segment {final} ({size} bytes)",
        hint="free disk space (or inodes) or move --data-dir",
    )


def sync_segment(
    path: str,
    start: int,
    end: int,
    seg: Segment | None,
    hook: Callable[[str, int, int], int] | None,
) -> int:
    """Make [start, end) of a segment durable; 0 or an errno (never raises OSError).

    With a test ``hook`` it decides instead. Without a live mapping (``seg`` None: a segment
    already unmapped) fdatasync on the file covers every byte written through any mapping.
    """
    try:
        if hook is not None:
            return hook(path, start, end)
        if seg is not None:
            return seg.sync(start, end)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return 0
    except OSError as exc:
        return exc.errno or errno.EIO
