"""The journal, the source of truth: every frame is appended here durably before it is parsed.

The front door for the rest of fastfeed: the writer (``Journal``), the lock-free reader
(``read_journal``) and the record vocabulary. The modules inside are the writer, the segment
files, torn-tail recovery, durable-LSN waiters and the Cython record layer (``_wal``).
"""

from fastfeed.journal.writer import (
    FsyncMode,
    Journal,
    JournalRecord,
    RecordKind,
    RecoveryReport,
    SyncHook,
    read_journal,
)

__all__ = [
    "FsyncMode",
    "Journal",
    "JournalRecord",
    "RecordKind",
    "RecoveryReport",
    "SyncHook",
    "read_journal",
]
