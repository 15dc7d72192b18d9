"""The journal, the source of truth: every frame is appended here durably before it is parsed.

The front door for the rest of fastfeed: the writer (``Journal``), the lock-free reader
(``read_journal``) and the record vocabulary. The modules inside are the writer, the segment
files, torn-tail recovery, durable-LSN waiters and the Cython record layer (``_wal``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fastfeed.journal.kinds import FLAG_BINARY, RecordKind

if TYPE_CHECKING:
    from fastfeed.journal.writer import (
        FsyncMode,
        Journal,
        JournalRecord,
        RecoveryReport,
        SyncHook,
        read_journal,
    )

__all__ = [
    "FLAG_BINARY",
    "FsyncMode",
    "Journal",
    "JournalRecord",
    "RecordKind",
    "RecoveryReport",
    "SyncHook",
    "read_journal",
]


def __getattr__(name: str) -> object:
    # The writer (and with it the Cython core) loads on first use, so importing
    # fastfeed.journal.kinds -- as derive/ does -- never loads _wal.
    if name in __all__:
        return getattr(importlib.import_module("fastfeed.journal.writer"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
