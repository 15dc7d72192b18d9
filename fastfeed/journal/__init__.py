"""The journal, the source of truth: every frame is appended here durably before it is parsed.

The front door for the rest of fastfeed: the writer (``Journal``), the lock-free readers
(``read_journal``, ``end_of_log``, ``scan_journal``) and the record vocabulary (``RecordKind``,
``FLAG_BINARY``). The modules inside are the writer, the reader, the segment files, torn-tail
recovery, durable-LSN waiters and the Cython record layer (``_wal``); nothing outside this
package imports them directly.
"""

from fastfeed.journal.kinds import FLAG_BINARY, RecordKind
from fastfeed.journal.reader import (
    Break,
    Damage,
    JournalEnd,
    JournalRecord,
    JournalScan,
    end_of_log,
    read_journal,
    scan_journal,
)
from fastfeed.journal.recovery import RecoveryReport
from fastfeed.journal.writer import FsyncMode, Journal, SyncHook

__all__ = [
    "FLAG_BINARY",
    "Break",
    "Damage",
    "FsyncMode",
    "Journal",
    "JournalEnd",
    "JournalRecord",
    "JournalScan",
    "RecordKind",
    "RecoveryReport",
    "SyncHook",
    "end_of_log",
    "read_journal",
    "scan_journal",
]
