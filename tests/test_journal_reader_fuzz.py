"""Bad bytes on disk: the journal reader and recovery give valid records or a documented error.

The contract (``check_journal``) is shared with the coverage-guided harness in fuzz/: whatever
the segment files hold, ``read_journal`` and ``Journal.open`` (with and without repair) raise
nothing but ``JournalCorrupt``/``JournalFormatError``, never return a record whose CRC fails or
whose LSN breaks the sequence, and a journal they open accepts an append that reads back, also
after reopening.
"""

from __future__ import annotations

import functools
import shutil
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastfeed.errors import JournalCorrupt, JournalFormatError
from fastfeed.journal import FsyncMode, Journal, JournalRecord, RecordKind, read_journal
from fastfeed.journal._wal import crc32c
from fastfeed.journal.segments import segment_path

__all__ = ["Mutation", "check_journal", "damaged_journal", "template_segments"]

SEG = 4096  # small segments, so a few records span several of them
HEADER = struct.Struct("<8sIIQQ32x")  # magic, version, header size, index, file size
RECORD = struct.Struct("<IIQqHHI")  # length, crc, lsn, recv_ns, kind, stream, flags
DOCUMENTED = (JournalCorrupt, JournalFormatError)
Fields = tuple[int, int, int, int, int, bytes]  # JournalRecord's fields in order

# What the fuzzer may do to a real journal: (segment, offset, operation, value).
FLIP, ZERO, TRUNCATE, DELETE, WRITE = range(5)
Mutation = tuple[int, int, int, int]


def valid_frames(directory: Path) -> set[Fields]:
    """Every record at any 8-aligned offset of any segment whose CRC holds, found by brute force.

    Independent of the reader's walk: it trusts only the bytes, the header's index (the CRC
    seed) and CRC32C.
    """
    found: set[Fields] = set()
    for path in directory.glob("seg-*.wal"):
        data = path.read_bytes()
        if len(data) < HEADER.size:
            continue
        seed = HEADER.unpack_from(data)[3] & 0xFFFFFFFF
        for off in range(HEADER.size, len(data) - RECORD.size + 1, 8):
            length, crc, lsn, recv_ns, kind, stream, flags = RECORD.unpack_from(data, off)
            if (
                RECORD.size <= length <= len(data) - off
                and crc32c(data[off + 8 : off + length], seed) == crc
            ):
                payload = data[off + RECORD.size : off + length]
                found.add((lsn, kind, stream, flags, recv_ns, payload))
    return found


def _fields(record: JournalRecord) -> Fields:
    return record.lsn, record.kind, record.stream, record.flags, record.recv_ns, record.payload


def _check_records(records: list[JournalRecord], valid: set[Fields]) -> None:
    for record in records:
        assert _fields(record) in valid, f"LSN {record.lsn} fails its CRC or was never written"
    lsns = [r.lsn for r in records]
    assert lsns == list(range(lsns[0], lsns[0] + len(lsns))) if lsns else True, lsns


def _open(directory: Path, *, repair: bool) -> Journal | None:
    try:
        return Journal.open(
            directory, segment_bytes=SEG, fsync=FsyncMode.NONE, min_free_bytes=0, repair=repair
        )
    except DOCUMENTED:
        return None


def _opens_and_appends(directory: Path, *, repair: bool) -> bool:
    """Open (recovery), check what it kept, append one record and read it back."""
    valid = valid_frames(directory)
    journal = _open(directory, repair=repair)
    if journal is None:
        return False
    with journal:
        kept = list(journal.read())
        _check_records(kept, valid)
        assert journal.recovery.last_lsn == (kept[-1].lsn if kept else 0)
        assert journal.recovery.records_kept >= len(kept)
        lsn = journal.append(RecordKind.CONTROL, 0, 1, b"after recovery")
        assert lsn == journal.recovery.last_lsn + 1
        assert [r.payload for r in journal.read(lsn)] == [b"after recovery"]
    # Recovery left a clean log: it reopens without repair, with the new record at its end.
    again = _open(directory, repair=False)
    assert again is not None, "a journal recovery accepted does not reopen"
    with again:
        assert [r.payload for r in again.read(lsn)] == [b"after recovery"]
    return True


def check_journal(directory: Path) -> None:
    """The contract, on a journal directory holding anything at all (it may be modified).

    Raises:
        AssertionError: the contract broke (any exception other than JournalCorrupt or
            JournalFormatError is a bug too).
    """
    valid = valid_frames(directory)
    try:
        records = list(read_journal(directory))
    except DOCUMENTED:
        records = []
    _check_records(records, valid)
    scratch = directory.with_name(directory.name + "-repair")
    shutil.copytree(directory, scratch)
    if not _opens_and_appends(directory, repair=False):
        _opens_and_appends(scratch, repair=True)


@functools.cache
def template_segments() -> tuple[bytes, ...]:
    """A real journal of three segments, as bytes: what the fuzzer damages."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "journal"
        with Journal.open(
            directory, segment_bytes=SEG, fsync=FsyncMode.NONE, min_free_bytes=0
        ) as j:
            for n in range(1, 24):
                j.append(RecordKind.INBOUND, 1, n * 1000, bytes([n]) * (n * 17 % 400), n & 1)
        paths = sorted(directory.glob("seg-*.wal"))
        return tuple(p.read_bytes() for p in paths)


def damaged_journal(directory: Path, mutations: list[Mutation]) -> None:
    """Write the template journal into ``directory`` with ``mutations`` applied."""
    files = [bytearray(b) for b in template_segments()]
    deleted: set[int] = set()
    for seg, offset, op, value in mutations:
        data = files[seg % len(files)]
        at = offset % max(len(data), 1)
        if op == FLIP and data:
            data[at] ^= 1 << (value % 8)
        elif op == ZERO:
            data[at : at + value % 64] = bytes(len(data[at : at + value % 64]))
        elif op == TRUNCATE:
            del data[at:]
        elif op == DELETE:
            deleted.add(seg % len(files))
        elif op == WRITE:
            data[at : at + 1] = bytes([value % 256])
    directory.mkdir()
    for index, data in enumerate(files):
        if index not in deleted:
            segment_path(directory, index).write_bytes(data)


def raw_segment(directory: Path, body: bytes, *, with_header: bool) -> None:
    """One segment holding ``body``; with ``with_header``, a full-size segment as the writer
    makes them (header passing every check, ``body`` then zeros up to ``SEG`` bytes).
    """
    directory.mkdir()
    data = body
    if with_header:
        data = HEADER.pack(b"FFWALSEG", 1, HEADER.size, 0, SEG) + body[: SEG - HEADER.size]
        data += bytes(SEG - len(data))
    segment_path(directory, 0).write_bytes(data)


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
mutations = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, SEG), st.integers(0, 4), st.integers(0, 255)),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(mutations)
def test_damaged_real_journal(muts: list[Mutation]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "journal"
        damaged_journal(directory, muts)
        check_journal(directory)


@FUZZ
@given(st.binary(max_size=600), st.booleans())
def test_arbitrary_bytes_as_a_segment(body: bytes, with_header: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "journal"
        raw_segment(directory, body, with_header=with_header)
        check_journal(directory)
