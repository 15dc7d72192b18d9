"""The journal's record vocabulary: what a record holds (``RecordKind``) and its flag bits."""

from __future__ import annotations

import enum

__all__ = ["FLAG_BINARY", "RecordKind"]

FLAG_BINARY = 1  # flags bit 0: the frame was a binary WebSocket frame (else text)


class RecordKind(enum.IntEnum):
    """What a journal record holds."""

    INBOUND = 1  # a WebSocket frame received (text or binary: see FLAG_BINARY)
    OUTBOUND = 2  # a command we sent
    CONNECTION = 3  # connection event (JSON payload)
    GAP = 4  # reserved: nothing writes it (gaps are derived, into SQLite's ledger)
    SNAPSHOT = 5  # reserved: marks a snapshot reaching an LSN
    CONTROL = 6  # recorder control info (subscription set changes, stream registry)
