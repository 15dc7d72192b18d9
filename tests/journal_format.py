"""A pure-Python reader of the journal's on-disk format, to cross-check the Cython core.

It decodes segment and record headers straight from the file bytes, with the layout written in
fastfeed/journal/_wal.pxd, and checks each CRC with its own table-driven CRC32C. It imports
nothing from fastfeed, so a bug in fastfeed/journal/_wal.pyx cannot hide by being shared with its
checker.

Format (little-endian): a segment file ``seg-<index:016d>.wal`` starts with a 64-byte header
(magic ``FFWALSEG``, version 1, header size 64, index, file size, 32 zero bytes). Records follow
from offset 64, each at an 8-byte aligned offset: a 32-byte header (length = 32 + payload bytes,
CRC32C of bytes [8, length) seeded with the segment index, LSN, recv_ns, kind, stream, flags),
the payload, zero padding. A length of 0 (or no room for a header) ends the segment's records.
LSNs run 1, 2, 3, ... across segments.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DiskRecord",
    "FormatViolation",
    "Log",
    "SegmentHeader",
    "crc32c",
    "disk_records",
    "read_log",
    "segment_files",
    "segment_header",
    "segment_records",
]

MAGIC = b"FFWALSEG"
VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sIIQQQI20s")  # magic, version, header size, index, size,
# durable mark (an LSN), CRC32C of the mark seeded with the index, zero
RECORD_HEADER = struct.Struct("<IIQqHHI")  # length, crc, lsn, recv_ns, kind, stream, flags
assert SEGMENT_HEADER.size == 64 and RECORD_HEADER.size == 32
_NAME = re.compile(r"^seg-(\d{16})\.wal$")


def _crc32c_table() -> list[int]:
    """The byte table of the reflected Castagnoli polynomial 0x82F63B78."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes | memoryview, value: int = 0) -> int:
    """CRC32C of ``data`` continuing from the CRC ``value`` (0 for a fresh one)."""
    crc = value ^ 0xFFFFFFFF
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class FormatViolation(ValueError):
    """A segment header that does not match the format."""


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """The 64-byte header at offset 0 of a segment file."""

    magic: bytes
    version: int
    header_size: int
    index: int
    size: int
    durable_mark: int
    mark_crc: int
    reserved: bytes


def segment_header(path: Path, data: bytes) -> SegmentHeader:
    """Decode and check the header of the segment file ``path`` whose bytes are ``data``."""
    header = SegmentHeader(*SEGMENT_HEADER.unpack_from(data, 0))
    named = _NAME.match(path.name)
    problems = [
        (header.magic != MAGIC, f"magic {header.magic!r}"),
        (header.version != VERSION, f"version {header.version}"),
        (header.header_size != SEGMENT_HEADER.size, f"header size {header.header_size}"),
        (named is None or int(named.group(1)) != header.index, f"index {header.index}"),
        (header.size != len(data), f"size {header.size} but {len(data)} bytes"),
        (header.reserved != bytes(20), "nonzero reserved bytes"),
    ]
    bad = [what for wrong, what in problems if wrong]
    if bad:
        raise FormatViolation(f"{path}: {', '.join(bad)}")
    return header


def segment_files(directory: Path) -> list[Path]:
    """The segment files of a journal directory, in index (= name) order."""
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


@dataclass(frozen=True, slots=True)
class DiskRecord:
    """One record as framed on disk, whether or not its CRC holds."""

    path: Path
    offset: int
    length: int
    crc: int
    lsn: int
    recv_ns: int
    kind: int
    stream: int
    flags: int
    payload: bytes
    crc_ok: bool

    @property
    def end(self) -> int:
        """Offset of the next record: the end of this one rounded up to 8 bytes."""
        return (self.offset + self.length + 7) & ~7

    def fields(self) -> tuple[int, int, int, int, int, bytes]:
        """(lsn, kind, stream, flags, recv_ns, payload), the order of fastfeed's JournalRecord."""
        return self.lsn, self.kind, self.stream, self.flags, self.recv_ns, self.payload


def segment_records(path: Path, data: bytes | None = None) -> Iterator[DiskRecord]:
    """Every record framed in one segment, up to a zero length or an impossible one."""
    if data is None:
        data = path.read_bytes()
    header = segment_header(path, data)
    seed = header.index & 0xFFFFFFFF
    offset = SEGMENT_HEADER.size
    while offset + RECORD_HEADER.size <= len(data):
        length, crc, lsn, recv_ns, kind, stream, flags = RECORD_HEADER.unpack_from(data, offset)
        if length < RECORD_HEADER.size or offset + length > len(data):
            return  # 0 is the end of the log; anything else cannot be framed
        body = data[offset + 8 : offset + length]
        payload = data[offset + RECORD_HEADER.size : offset + length]
        ok = crc32c(body, seed) == crc
        yield DiskRecord(path, offset, length, crc, lsn, recv_ns, kind, stream, flags, payload, ok)
        offset = (offset + length + 7) & ~7


def disk_records(directory: Path) -> Iterator[DiskRecord]:
    """Every record framed in every segment of ``directory``, valid or not, in file order."""
    for path in segment_files(directory):
        yield from segment_records(path)


@dataclass(frozen=True, slots=True)
class Log:
    """The log a directory holds: its valid records and what lies after the last one."""

    records: list[DiskRecord]
    end: tuple[Path, int] | None  # (segment, offset) after the last record; None: no segments
    garbage: int  # nonzero bytes after the end, in its segment and in later segments' bodies


def _nonzero(data: bytes, start: int) -> int:
    return len(data) - start - data.count(0, start)


def read_log(directory: Path) -> Log:
    """The records of the log in ``directory`` per the format, stopping at the first that fails.

    A record belongs to the log when its CRC holds and its LSN is the previous one + 1 (any
    LSN >= 1 for the first). Where a segment's records stop, the log goes on in the next segment
    only if that segment's first record continues the sequence; otherwise it ends there. A first
    segment without a valid first record holds an empty log.
    """
    records: list[DiskRecord] = []
    end: tuple[Path, int] | None = None
    files = segment_files(directory)
    for path in files:
        data = path.read_bytes()
        offset = SEGMENT_HEADER.size
        for record in segment_records(path, data):
            prev = records[-1].lsn if records else 0
            if not (record.crc_ok and record.lsn >= 1 and prev in (0, record.lsn - 1)):
                break
            records.append(record)
            offset = record.end
        if offset == SEGMENT_HEADER.size and end is not None:
            break  # the log does not continue into this segment
        end = (path, offset)
        if not records:
            break  # the first segment starts with no valid record: the log is empty
    garbage = 0
    if end is not None:
        after = files[files.index(end[0]) + 1 :]
        garbage = _nonzero(end[0].read_bytes(), end[1])
        garbage += sum(_nonzero(p.read_bytes(), SEGMENT_HEADER.size) for p in after)
    return Log(records, end, garbage)
