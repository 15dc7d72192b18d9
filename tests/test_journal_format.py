"""The Cython journal against the pure-Python reader of its format (tests/journal_format.py)."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from journal_format import FormatViolation, crc32c, disk_records, read_log, segment_files

from fastfeed.errors import JournalCorrupt
from fastfeed.journal import FsyncMode, Journal, JournalRecord, read_journal
from fastfeed.journal._wal import crc32c as core_crc32c

SEG = 4096
MAX_PAYLOAD = SEG - 64 - 32

Fields = tuple[int, int, int, int, int, bytes]
record_specs = st.tuples(
    st.integers(0, 0xFFFF),  # kind
    st.integers(0, 0xFFFF),  # stream
    st.integers(-(2**63), 2**63 - 1),  # recv_ns
    st.integers(0, 2**32 - 1),  # flags
    st.one_of(st.integers(0, 48), st.integers(0, MAX_PAYLOAD)),  # payload size
)
Spec = tuple[int, int, int, int, int]


def fields(record: JournalRecord) -> Fields:
    return record.lsn, record.kind, record.stream, record.flags, record.recv_ns, record.payload


def append_all(j: Journal, specs: list[Spec], rng: random.Random) -> list[Fields]:
    """Append one record per spec with random payload bytes; return what was written."""
    written = []
    for kind, stream, recv_ns, flags, size in specs:
        body = rng.randbytes(size)
        lsn = j.append(kind, stream, recv_ns, body, flags)
        written.append((lsn, kind, stream, flags, recv_ns, body))
    return written


def test_pure_crc32c_matches_the_check_value_and_the_core() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720, B.4)
    rng = random.Random(3)
    for _ in range(200):
        data = rng.randbytes(rng.randrange(0, 300))
        seed = rng.randrange(0, 2**32)
        assert crc32c(data, seed) == core_crc32c(data, seed)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cycles=st.lists(st.lists(record_specs, max_size=25), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_both_readers_agree_record_for_record(
    cycles: list[list[Spec]], seed: int, data: st.DataObject
) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        want: list[Fields] = []
        for specs in cycles:  # each cycle reopens: recovery, then appends after it
            with Journal.open(
                directory, segment_bytes=SEG, min_free_bytes=0, fsync=FsyncMode.NONE
            ) as j:
                assert j.recovery.last_lsn == len(want) and not j.recovery.repaired
                want += append_all(j, specs, rng)
                log = read_log(directory)
                assert [r.fields() for r in log.records] == want
                assert [fields(r) for r in j.read()] == want
                start = data.draw(st.integers(1, max(1, len(want))), label="from_lsn")
                assert [fields(r) for r in j.read(start)] == want[start - 1 :]
            log = read_log(directory)
            assert [r.fields() for r in log.records] == want
            assert [fields(r) for r in read_journal(directory)] == want
            assert log.garbage == 0  # after the last record, only zeros
            assert all(r.length == 32 + len(r.payload) and r.offset % 8 == 0 for r in log.records)
        assert len({r.path for r in log.records}) <= len(segment_files(directory))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(record_specs, min_size=1, max_size=40),
    seed=st.integers(0, 2**32 - 1),
    where=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_both_readers_stop_at_the_same_damage(
    specs: list[Spec], seed: int, where: float, bit: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with Journal.open(directory, segment_bytes=SEG, min_free_bytes=0) as j:
            want = append_all(j, specs, random.Random(seed))
        # Flip one bit anywhere past the segment headers (in a record, padding or the zeros).
        paths = segment_files(directory)
        spot = int(where * len(paths) * (SEG - 64))
        path, offset = paths[spot // (SEG - 64)], 64 + spot % (SEG - 64)
        image = bytearray(path.read_bytes())
        image[offset] ^= 1 << bit
        path.write_bytes(image)
        log = read_log(directory)
        got = [fields(r) for r in read_journal(directory)]
        assert [r.fields() for r in log.records] == got
        assert got == want[: len(got)]
        # Recovery keeps a prefix of what both readers see, or refuses with the place.
        try:
            reopened = Journal.open(directory, segment_bytes=SEG, min_free_bytes=0)
        except JournalCorrupt as exc:
            assert exc.segment is not None
            reopened = Journal.open(directory, segment_bytes=SEG, min_free_bytes=0, repair=True)
        with reopened as j:
            kept = j.recovery.last_lsn
            assert kept <= len(got) and j.recovery.records_kept == kept
            assert [fields(r) for r in j.read()] == want[:kept]
        after = read_log(directory)
        assert [r.fields() for r in after.records] == want[:kept]
        assert after.garbage == 0  # recovery zeroed whatever it did not keep


def test_segment_headers_are_checked(tmp_path: Path) -> None:
    with Journal.open(tmp_path, segment_bytes=SEG, min_free_bytes=0) as j:
        j.append(1, 2, 3, b"x")
    assert [r.fields() for r in disk_records(tmp_path)] == [(1, 1, 2, 0, 3, b"x")]
    first = segment_files(tmp_path)[0]
    first.write_bytes(b"FFWALSEH" + first.read_bytes()[8:])
    with pytest.raises(FormatViolation, match="magic"):
        read_log(tmp_path)
