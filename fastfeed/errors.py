"""Every error fastfeed raises on purpose, with fields an operator can act on.

FastfeedError                 base; ``hint`` says what the operator can do about it
├── ConfigError               a bad flag, config file, channel spec or path
├── JournalError              anything wrong with the write-ahead log
│   ├── JournalLocked         another process holds the journal directory
│   ├── JournalCorrupt        damage followed by valid records (segment, offset)
│   ├── JournalFormatError    a data dir written by another format version
│   ├── JournalSyncError      msync/fdatasync failed: fatal, nothing acknowledged after it
│   ├── RecordTooLarge        a record larger than a segment holds (size, limit)
│   └── DiskFull              not enough free space to continue safely
├── StoreError                the SQLite side (snapshots, checkpoints, gap ledger)
└── VenueError                the venue refused us (bad key, rejected subscription)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DiskFull",
    "FastfeedError",
    "JournalCorrupt",
    "JournalError",
    "JournalFormatError",
    "JournalLocked",
    "JournalSyncError",
    "RecordTooLarge",
    "StoreError",
    "VenueError",
]


class FastfeedError(Exception):
    """Base of fastfeed's errors: a message and an optional hint for the operator."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(FastfeedError):
    """A bad flag, config file, channel spec or path."""


class JournalError(FastfeedError):
    """Anything wrong with the write-ahead log."""


class JournalLocked(JournalError):
    """Another process holds the exclusive lock on the journal directory."""


class JournalCorrupt(JournalError):
    """Damage in the middle of the log: valid records follow the bad bytes."""

    def __init__(self, message: str, *, segment: str, offset: int, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.segment = segment
        self.offset = offset


class JournalFormatError(JournalError):
    """The data dir was written by a different on-disk format version."""


class JournalSyncError(JournalError):
    """msync/fdatasync failed. Fatal: Linux may already have marked the pages clean."""

    def __init__(self, message: str, *, errno: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.errno = errno


class RecordTooLarge(JournalError, ValueError):
    """A record larger than one segment can hold (a ValueError too: a bad argument to append).

    The recorder refuses at start-up a segment size that cannot hold the largest frame it
    accepts, so this means a caller bypassed that check.
    """

    def __init__(self, message: str, *, size: int, limit: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.size = size
        self.limit = limit


class DiskFull(JournalError):
    """Free space fell below the safety threshold; recording stopped cleanly."""


class StoreError(FastfeedError):
    """The SQLite store failed or holds something unexpected."""


class VenueError(FastfeedError):
    """The venue refused us: invalid key, rejected subscription."""

    def __init__(self, message: str, *, code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
