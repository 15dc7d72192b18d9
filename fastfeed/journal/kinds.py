"""The record vocabulary of the journal, importable without loading the Cython journal.

Readers that only interpret records (fastfeed/derive/) take these from here, so deriving rows
never loads ``_wal``.
"""

from __future__ import annotations

import enum

__all__ = ["FLAG_BINARY", "RecordKind"]

FLAG_BINARY = 1  # record header flags bit 0: the frame was a binary WebSocket frame


class RecordKind(enum.IntEnum):
    """What a journal record holds."""

    INBOUND = 1  # a WebSocket frame received (text or binary: see flags)
    OUTBOUND = 2  # a command we sent
    CONNECTION = 3  # connection event (JSON payload)
    GAP = 4  # reserved: nothing writes it (gaps are derived, see fastfeed/derive/sequence.py)
    SNAPSHOT = 5  # reserved: marks a snapshot reaching an LSN
    CONTROL = 6  # recorder control info (subscription set changes, stream registry)
