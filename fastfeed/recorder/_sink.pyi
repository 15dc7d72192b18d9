"""Types of the recorder's Cython hot path (fastfeed/recorder/_sink.pyx)."""

from typing import Protocol

import picows
from typing_extensions import Buffer

from fastfeed.errors import JournalError
from fastfeed.journal import Journal
from fastfeed.journal._wal import WalWriter

__all__ = ["AcceptTimes", "FrameSink", "Scanner", "StreamTable", "scanner_venues"]

def scanner_venues() -> list[str]: ...

class Scanner:
    venue: str
    def __init__(self, venue: str) -> None: ...
    def spans(self, payload: Buffer) -> tuple[bytes, bytes, int, int, int] | None: ...
    def key_seq(self, payload: bytes) -> tuple[bytes, int] | None: ...

class StreamTable:
    size: int
    capacity: int
    def __init__(self, capacity: int = ...) -> None: ...
    def register(self, key: bytes, last: int) -> bool: ...
    def last(self, key: bytes) -> int | None: ...

class AcceptTimes:
    max_ns: int
    bucket_ns: int
    def __init__(self) -> None: ...
    def buckets(self) -> list[int]: ...

class SinkHandler(Protocol):
    def on_unusual_frame(
        self, lsn: int, recv_ns: int, payload: bytes, binary: bool
    ) -> int | None: ...
    def on_journal_error(self, exc: JournalError) -> None: ...

class SinkControl(Protocol):
    def ws_connected(self, transport: picows.WSTransport) -> None: ...
    def ws_other_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None: ...
    def data(self, payload: bytes, binary: bool) -> None: ...

class FrameSink(picows.WSListener):
    table: StreamTable
    frames: int
    steady: int
    divert: bool
    timing: AcceptTimes | None
    def __init__(
        self,
        journal: WalWriter,
        scanner: Scanner,
        table: StreamTable,
        handler: SinkHandler,
        control: SinkControl,
        slot: int,
        always: Journal | None,
        max_frame: int = ...,
    ) -> None: ...
    def end_of_read(self) -> None: ...
