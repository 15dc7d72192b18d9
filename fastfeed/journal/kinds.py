"""The journal's record vocabulary: what a record holds (``RecordKind``) and its flag bits."""

from __future__ import annotations

import enum

__all__ = ["FLAG_BINARY", "FLAG_SHADOW", "RecordKind"]

FLAG_BINARY = 1  # flags bit 0: the frame was a binary WebSocket frame (else text)
# flags bit 1: a second connection's copy of a frame without ids, received while two
# connections overlap (a rotation): journaled like every frame, derived from the other copy.
FLAG_SHADOW = 2


class RecordKind(enum.IntEnum):
    """What a journal record holds."""

    INBOUND = 1  # a WebSocket frame received (text or binary: see FLAG_BINARY)
    OUTBOUND = 2  # a command we sent
    CONNECTION = 3  # connection event (JSON payload)
    GAP = 4  # the recorder gave up a gap nothing can fill: {"event":"lost","upto":..}, or
    # skipped a frame over the size limit: {"event":"oversized","size":..,"channel","symbol","seq"}
    SNAPSHOT = 5  # reserved: marks a snapshot reaching an LSN
    CONTROL = 6  # recorder control info (subscription set changes, stream registry)
    REST = 7  # a REST response (venue snapshot): fastfeed/derive/rest_record.py
