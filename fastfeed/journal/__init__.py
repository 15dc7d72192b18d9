"""The journal, the source of truth: every frame is appended here durably before it is parsed.

The front door for the rest of fastfeed: the writer (``Journal``), the lock-free readers
(``read_journal``, ``end_of_log``, ``scan_journal``) and the record vocabulary (``RecordKind``,
``FLAG_BINARY``). The modules inside are the writer, the reader, the segment files, torn-tail
recovery, durable-LSN waiters and the Cython record layer (``_wal``); nothing outside this
package imports them directly, except ``fastfeed.journal.kinds`` (below).

Only the vocabulary is imported eagerly; the rest loads on first use (PEP 562), so the sans-I/O
rooms (derive/) can name a record kind through ``fastfeed.journal.kinds`` without loading the
Cython core, its threads or its files.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fastfeed.journal.kinds import FLAG_BINARY, FLAG_SHADOW, RecordKind

if TYPE_CHECKING:
    from fastfeed.journal.reader import (
        Break,
        Damage,
        JournalEnd,
        JournalReader,
        JournalRecord,
        JournalScan,
        end_of_log,
        read_journal,
        scan_journal,
    )
    from fastfeed.journal.recovery import RecoveryReport
    from fastfeed.journal.segments import max_payload, segment_bytes_for
    from fastfeed.journal.writer import FsyncMode, Journal, SyncHook

__all__ = [
    "FLAG_BINARY",
    "FLAG_SHADOW",
    "Break",
    "Damage",
    "FsyncMode",
    "Journal",
    "JournalEnd",
    "JournalReader",
    "JournalRecord",
    "JournalScan",
    "RecordKind",
    "RecoveryReport",
    "SyncHook",
    "end_of_log",
    "max_payload",
    "read_journal",
    "scan_journal",
    "segment_bytes_for",
]

_HOME = {
    "Break": "reader",
    "Damage": "reader",
    "JournalEnd": "reader",
    "JournalReader": "reader",
    "JournalRecord": "reader",
    "JournalScan": "reader",
    "end_of_log": "reader",
    "read_journal": "reader",
    "scan_journal": "reader",
    "RecoveryReport": "recovery",
    "max_payload": "segments",
    "segment_bytes_for": "segments",
    "FsyncMode": "writer",
    "Journal": "writer",
    "SyncHook": "writer",
}


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` on first use."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
