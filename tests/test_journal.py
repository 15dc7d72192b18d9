"""The journal: round trips, recovery of torn tails and corruption, durability modes, readers."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from journal_format import disk_records, segment_header, segment_records

from fastfeed.errors import (
    DiskFull,
    JournalCorrupt,
    JournalError,
    JournalFormatError,
    JournalLocked,
    JournalSyncError,
    RecordTooLarge,
)
from fastfeed.journal import (
    FsyncMode,
    Journal,
    JournalReader,
    JournalRecord,
    RecordKind,
    max_payload,
    read_journal,
    segment_bytes_for,
    writer,
)
from fastfeed.journal import reader as reader_module
from fastfeed.journal._wal import Segment
from fastfeed.journal.segments import segment_path

SEG = 4096  # small segments: rollover every few records
HDR = 64
REC = 32


def payload(lsn: int, size: int | None = None) -> bytes:
    """Deterministic payload for an LSN, so reads can be checked byte for byte."""
    n = (lsn * 37) % 700 if size is None else size
    return bytes((lsn + i) % 251 for i in range(n))


def open_journal(directory: Path, **kw: object) -> Journal:
    kw.setdefault("segment_bytes", SEG)
    kw.setdefault("min_free_bytes", 0)
    return Journal.open(directory, **kw)  # type: ignore[arg-type]


def fill(j: Journal, count: int) -> None:
    for _ in range(count):
        lsn = j.accepted_lsn + 1
        assert j.append(RecordKind.INBOUND, lsn % 3, lsn * 1000, payload(lsn), lsn & 1) == lsn


def expected(lsn: int) -> JournalRecord:
    return JournalRecord(lsn, RecordKind.INBOUND, lsn % 3, lsn & 1, lsn * 1000, payload(lsn))


def locate(directory: Path, lsn: int) -> tuple[Path, int, int]:
    for record in disk_records(directory):
        if record.lsn == lsn:
            return record.path, record.offset, record.length
    raise AssertionError(f"LSN {lsn} not on disk")


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def flip_bit(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


# --- round trips ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, SEG - HDR - REC), min_size=1, max_size=60), data=st.data())
def test_round_trip_across_segments(sizes: list[int], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "journal"
        with open_journal(directory, fsync=FsyncMode.NONE) as j:
            for lsn, size in enumerate(sizes, 1):
                assert j.append(2, 7, -lsn, payload(lsn, size), 0) == lsn
            start = data.draw(st.integers(1, len(sizes)))
            got = list(j.read(start))
        want = [JournalRecord(n, 2, 7, 0, -n, payload(n, s)) for n, s in enumerate(sizes, 1)]
        assert got == want[start - 1 :]
        assert list(read_journal(directory)) == want
        with open_journal(directory) as j:
            assert j.recovery.last_lsn == len(sizes)
            assert j.recovery.records_kept == len(sizes)
            assert not j.recovery.repaired


MILLION = 1_000_000


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    max_size=st.integers(0, 64),
    segment_bytes=st.sampled_from([256 * 1024, 1024 * 1024]),
)
def test_million_records_of_random_sizes_round_trip(
    seed: int, max_size: int, segment_bytes: int
) -> None:
    rng = random.Random(seed)
    sizes = [rng.randrange(max_size + 1) for _ in range(MILLION)]
    blob = memoryview(rng.randbytes(MILLION + max_size))  # payload n: blob[n : n + size]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        # NONE mode and a no-op sync hook: this is about framing, not the disk's flush speed.
        with open_journal(
            directory, segment_bytes=segment_bytes, fsync=FsyncMode.NONE, sync_hook=lambda *_: 0
        ) as j:
            append = j.append
            for n, size in enumerate(sizes):
                append(n % 7, n & 0xFFFF, n - 500_000, blob[n : n + size], n & 1)
            assert j.accepted_lsn == MILLION
        segments = len(list(directory.glob("seg-*.wal")))
        assert segments >= MILLION * 32 // segment_bytes  # many rollovers
        count = 0
        for n, (record, size) in enumerate(zip(read_journal(directory), sizes, strict=True)):
            want = JournalRecord(n + 1, n % 7, n & 0xFFFF, n & 1, n - 500_000, blob[n : n + size])
            assert record == want, f"record {n + 1} differs"
            count += 1
        assert count == MILLION
        with open_journal(directory, segment_bytes=segment_bytes) as j:
            assert (j.recovery.records_kept, j.recovery.last_lsn) == (MILLION, MILLION)


def test_lsn_continues_across_reopen(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 50)
    with open_journal(tmp_path) as j:
        assert (j.accepted_lsn, j.durable_lsn) == (50, 50)
        fill(j, 50)
        assert j.accepted_lsn == 100
    assert list(read_journal(tmp_path)) == [expected(n) for n in range(1, 101)]
    assert list(read_journal(tmp_path, 42, 44)) == [expected(42), expected(43), expected(44)]


def test_payload_is_copied_and_any_buffer_is_accepted(tmp_path: Path) -> None:
    buf = bytearray(b"frame-one")
    with open_journal(tmp_path) as j:
        j.append(1, 0, 0, buf)
        buf[:] = b"XXXXXXXXX"  # the caller reuses its buffer (picows frame memory)
        j.append(1, 0, 0, memoryview(b"__frame-two__")[2:-2])
        j.append(1, 0, 0, b"")
        assert [r.payload for r in j.read()] == [b"frame-one", b"frame-two", b""]


def test_an_oversized_record_is_a_journal_error_with_a_hint(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        with pytest.raises(RecordTooLarge) as caught:
            j.append(1, 0, 0, bytes(max_payload(SEG) + 1))
        assert isinstance(caught.value, JournalError)
        assert (caught.value.size, caught.value.limit) == (max_payload(SEG) + 1, max_payload(SEG))
        assert str(caught.value).endswith("(use a larger segment size (--segment-mib))")
        assert j.append(1, 0, 0, b"still fine") == 1  # refused, not fatal
    assert segment_bytes_for(max_payload(SEG)) == SEG


def test_oversized_record_and_bad_fields_are_refused(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        with pytest.raises(ValueError, match="exceeds the maximum 4000"):
            j.append(1, 0, 0, bytes(SEG - HDR - REC + 1))
        with pytest.raises(ValueError, match="16 bits"):
            j.append(70000, 0, 0, b"x")
        assert j.append(1, 0, 0, bytes(SEG - HDR - REC)) == 1


# --- recovery ------------------------------------------------------------------------------


def _torn_zero_length(path: Path, off: int, length: int) -> None:
    patch(path, off, b"\0\0\0\0")  # the length store never happened


def _torn_payload(path: Path, off: int, length: int) -> None:
    patch(path, off + length - 3, b"\0\0\0")  # the end of the payload never reached the disk


def _torn_bit(path: Path, off: int, length: int) -> None:
    flip_bit(path, off + REC + 1)


@pytest.mark.parametrize("damage", [_torn_zero_length, _torn_payload, _torn_bit])
def test_torn_tail_is_repaired_and_appending_resumes(tmp_path: Path, damage: object) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 30)
    path, off, length = locate(tmp_path, 30)
    assert callable(damage)
    damage(path, off, length)
    with open_journal(tmp_path) as j:
        report = j.recovery
        assert (report.last_lsn, report.records_kept, report.records_dropped) == (29, 29, 1)
        assert report.repaired and report.bytes_dropped > 0
        assert "dropped 1" in str(report)
        fill(j, 5)
    assert list(read_journal(tmp_path)) == [expected(n) for n in range(1, 35)]
    assert path.read_bytes()[off : off + 4] != b"\0\0\0\0"  # LSN 30 was rewritten in place


def test_half_written_record_in_the_next_segment_is_a_torn_tail(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 3)
    nxt = tmp_path / "seg-0000000000000001.wal"  # prepared ahead, still empty
    assert nxt.stat().st_size == SEG
    patch(nxt, HDR + 8, struct.pack("<Q", 4) + b"partial record, length never stored")
    with open_journal(tmp_path) as j:
        assert (j.recovery.last_lsn, j.recovery.records_dropped) == (3, 1)
        assert nxt.read_bytes()[HDR:] == bytes(SEG - HDR)
        fill(j, 30)  # rolls over into the zeroed segment
    assert list(read_journal(tmp_path)) == [expected(n) for n in range(1, 34)]


def test_mid_log_bit_flip_is_refused_then_repaired(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 40)
    path, off, _ = locate(tmp_path, 20)
    flip_bit(path, off + REC + 2)
    with pytest.raises(JournalCorrupt) as info:
        open_journal(tmp_path)
    assert (info.value.segment, info.value.offset) == (str(path), off)
    assert f"offset {off}" in str(info.value) and "--repair-journal" in str(info.value)
    with open_journal(tmp_path, repair=True) as j:
        report = j.recovery
        assert (report.last_lsn, report.records_kept, report.records_dropped) == (19, 19, 21)
        assert report.repaired
        fill(j, 2)
    assert list(read_journal(tmp_path)) == [expected(n) for n in range(1, 22)]


@pytest.mark.parametrize(("damaged", "refused"), [(17, False), (15, True), (5, True)])
def test_damage_past_the_durable_mark_is_a_torn_tail_before_it_corruption(
    tmp_path: Path, damaged: int, refused: bool
) -> None:
    """A power cut can lose a page written after the last sync while later pages survive."""
    live, image = tmp_path / "live", tmp_path / "image"
    with open_journal(live, fsync=FsyncMode.NONE) as j:
        fill(j, 10)
        j.sync()  # the mark (LSN 10) is stored now and reaches the disk with the next sync
        fill(j, 5)
        j.sync()  # 11..15 durable; the mark says 15 in the page cache
        fill(j, 5)  # 16..20: never synced
        # What the disk holds if the power goes now (the page cache as it is).
        image.mkdir()
        for seg in live.glob("seg-*.wal"):
            (image / seg.name).write_bytes(seg.read_bytes())
    path, off, _ = locate(image, damaged)
    flip_bit(path, off + REC + 2)
    if refused:
        with pytest.raises(JournalCorrupt, match="below LSN 15 known durable"):
            open_journal(image)
        return
    with open_journal(image) as j:
        report = j.recovery
        assert (report.last_lsn, report.records_dropped, report.repaired) == (16, 4, True)
    assert list(read_journal(image)) == [expected(n) for n in range(1, 17)]


def test_a_segment_prepared_at_another_size_is_replaced(tmp_path: Path) -> None:
    """Restarting with a larger segment size: a big record must not go into the old size."""
    with open_journal(tmp_path, segment_bytes=SEG) as j:
        fill(j, 2)
    prepared = sorted(tmp_path.glob("seg-*.wal"))[1]
    assert prepared.stat().st_size == SEG  # the commit thread made the next one ahead
    big = bytes(range(256)) * 40  # larger than a whole SEG-byte segment
    with open_journal(tmp_path, segment_bytes=4 * SEG) as j:
        while j.segment.index == 0:  # fill segment 0 until the big record rolls over
            j.append(RecordKind.INBOUND, 0, 0, big)
        last = j.accepted_lsn
    assert prepared.stat().st_size == 4 * SEG
    assert next(read_journal(tmp_path, last)).payload == big


def test_damage_at_a_segment_end_with_later_segments_is_corruption(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 40)
    first = sorted(tmp_path.glob("seg-*.wal"))[0]
    last_in_first = [r for r in disk_records(tmp_path) if r.path == first][-1]
    off, lsn = last_in_first.offset, last_in_first.lsn
    patch(first, off, b"\0\0\0\0")  # a zero length mid-log must not look like a clean end
    with pytest.raises(JournalCorrupt) as info:
        open_journal(tmp_path)
    assert (info.value.segment, info.value.offset) == (str(first), off)
    with open_journal(tmp_path, repair=True) as j:
        assert j.recovery.last_lsn == lsn - 1
    assert sorted(tmp_path.glob("seg-*.wal"))[0] == first


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 3)
    patch(tmp_path / "seg-0000000000000000.wal", 8, struct.pack("<I", 2))
    with pytest.raises(JournalFormatError, match="format version 2"):
        open_journal(tmp_path)


# --- locking and disk space ----------------------------------------------------------------


def test_second_writer_in_another_process_is_refused(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fastfeed.errors import JournalLocked\n"
        "from fastfeed.journal import Journal\n"
        "try:\n"
        "    Journal.open(Path(sys.argv[1]), segment_bytes=4096, min_free_bytes=0)\n"
        "except JournalLocked as exc:\n"
        "    print('locked:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with open_journal(tmp_path):
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=True,
        ).stdout
        assert out.startswith(f"locked: journal {tmp_path} is in use by another writer (pid")
        assert str(os.getpid()) in out
    with open_journal(tmp_path) as j:  # released at close
        assert j.accepted_lsn == 0


def test_second_writer_in_this_process_is_refused(tmp_path: Path) -> None:
    with open_journal(tmp_path), pytest.raises(JournalLocked):
        open_journal(tmp_path)


def test_min_free_space_refuses_new_segments_with_a_clear_message(tmp_path: Path) -> None:
    # The free-space guard only (statvfs): tests/test_journal_disk_full.py fills a real tmpfs.
    with pytest.raises(DiskFull, match=r"not creating journal segment .*seg-0+\.wal: \d+ bytes"):
        open_journal(tmp_path, min_free_bytes=2**62)
    with open_journal(tmp_path) as j:
        fill(j, 3)
    with open_journal(tmp_path, min_free_bytes=2**62) as j:  # existing segments still usable
        fill(j, 5)  # fits in segment 0
        assert j.append(1, 0, 0, bytes(3000)) == 9  # segment 1 was prepared by the first open
        with pytest.raises(DiskFull, match=r"seg-0+2\.wal"):
            j.append(1, 0, 0, bytes(3000))
        assert j.accepted_lsn == 9


# --- durability ----------------------------------------------------------------------------


class Hook:
    """A sync_hook that records calls and fails with ``errno_`` from call number ``fail_at``."""

    def __init__(self, fail_at: int | None = None, errno_: int = errno.EIO) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.fail_at = fail_at
        self.errno = errno_
        self.lock = threading.Lock()

    def __call__(self, path: str, start: int, end: int) -> int:
        with self.lock:
            self.calls.append((path, start, end))
            if self.fail_at is not None and len(self.calls) >= self.fail_at:
                return self.errno
        return 0


def test_sync_failure_is_fatal(tmp_path: Path) -> None:
    hook = Hook()
    j = open_journal(tmp_path, sync_hook=hook, fsync=FsyncMode.NONE)
    fill(j, 3)
    assert j.sync() == 3
    hook.fail_at = len(hook.calls) + 1
    fill(j, 2)
    with pytest.raises(JournalSyncError, match="Input/output error") as info:
        j.sync()
    assert info.value.errno == errno.EIO
    assert j.durable_lsn == 3
    with pytest.raises(JournalSyncError):
        j.append(1, 0, 0, b"after")
    with pytest.raises(JournalSyncError):
        asyncio.run(j.wait_durable(5))
    j.close()  # releases everything; the failure stands
    assert j.durable_lsn == 3


def test_group_commit_makes_records_durable(tmp_path: Path) -> None:
    hook = Hook()

    async def main() -> None:
        with open_journal(tmp_path, sync_hook=hook, group_commit_ms=1.0) as j:
            fill(j, 10)
            await asyncio.wait_for(j.wait_durable(10), timeout=10)
            assert j.durable_lsn >= 10
            waiters = [j.wait_durable(n) for n in (11, 12, 13)]
            fill(j, 3)
            await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)
            assert j.durable_lsn == 13

    asyncio.run(main(), debug=True)
    end_of_13 = locate(tmp_path, 13)
    covered = [(s, e) for p, s, e in hook.calls if p == str(end_of_13[0])]
    assert max(e for _, e in covered) >= end_of_13[1] + end_of_13[2]


@pytest.mark.parametrize("idle_after_s", [60.0, 0.0])
def test_a_live_feed_never_wakes_the_commit_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle_after_s: float
) -> None:
    # While appends keep coming the commit thread looks once a period: no append calls the
    # wake (a Python call inside the frame sink). Either way every record becomes durable.
    monkeypatch.setattr(writer, "IDLE_AFTER_S", idle_after_s)
    wakes = 0

    async def main() -> None:
        nonlocal wakes
        with open_journal(tmp_path, group_commit_ms=1.0) as j:

            def wake() -> None:
                nonlocal wakes
                wakes += 1
                j._event.set()

            j._w._writer_setup(False, wake, j._rollover, j._commit)
            for _ in range(50):
                fill(j, 1)
                await asyncio.wait_for(j.wait_durable(j.accepted_lsn), timeout=10)

    asyncio.run(main())
    if idle_after_s:
        assert wakes == 0


def test_a_zero_group_window_still_commits(tmp_path: Path) -> None:
    async def main() -> None:
        with open_journal(tmp_path, group_commit_ms=0.0) as j:
            fill(j, 3)
            await asyncio.wait_for(j.wait_durable(3), timeout=10)

    asyncio.run(main())


def test_group_commit_sync_failure_fails_waiters(tmp_path: Path) -> None:
    hook = Hook(fail_at=1)

    async def main() -> None:
        with open_journal(tmp_path, sync_hook=hook) as j:
            fill(j, 2)
            with pytest.raises(JournalSyncError):
                await asyncio.wait_for(j.wait_durable(2), timeout=10)
            assert j.durable_lsn == 0
            with pytest.raises(JournalSyncError):
                fill(j, 1)

    asyncio.run(main())


def test_always_mode_is_durable_on_return(tmp_path: Path) -> None:
    hook = Hook()
    with open_journal(tmp_path, fsync=FsyncMode.ALWAYS, sync_hook=hook) as j:
        for n in range(1, 30):
            assert j.append(1, 0, 0, payload(n)) == n
            assert j.durable_lsn == n
            path, off, length = locate(tmp_path, n)
            assert hook.calls[-1] == (str(path), off, (off + length + 7) & ~7)


def test_real_syncs_keep_every_byte_the_writer_unmapped(tmp_path: Path) -> None:
    # A real sync (no hook) drops the writer's mapping of the pages it syncs: what was written
    # through it must stay in the file, and appends into the partly synced last page must land.
    with open_journal(tmp_path, segment_bytes=1 << 20) as j:
        fill(j, 100)  # several pages
        assert j.sync() == 100
        fill(j, 100)  # continues in the page the first sync ended in
        assert j.sync() == 200
        (path,) = {r.path for r in disk_records(tmp_path)}
        data = path.read_bytes()  # through the file, not the writer's mapping
        records = list(segment_records(path, data))
        assert [r.fields() for r in records] == [tuple(expected(n)) for n in range(1, 201)]
        assert all(r.crc_ok for r in records)
        assert segment_header(path, data).durable_mark == 200


def test_none_mode_syncs_only_at_close(tmp_path: Path) -> None:
    hook = Hook()
    j = open_journal(tmp_path, fsync=FsyncMode.NONE, sync_hook=hook)
    fill(j, 40)  # several rollovers
    assert j.durable_lsn == 0 and hook.calls == []
    j.close()
    assert j.durable_lsn == 40
    synced = {p for p, _, _ in hook.calls}
    assert synced == {str(r.path) for r in disk_records(tmp_path)}
    with pytest.raises(JournalError, match="closed"):
        j.append(1, 0, 0, b"late")
    j.close()  # idempotent


# --- readers and retention -----------------------------------------------------------------


def test_reader_concurrent_with_writer(tmp_path: Path) -> None:
    total = 3000
    with open_journal(tmp_path, segment_bytes=16384) as j:
        done = threading.Event()

        def writer() -> None:
            fill(j, total)
            done.set()

        t = threading.Thread(target=writer)
        t.start()
        seen = 0
        while True:
            finished = done.is_set()
            got = list(read_journal(tmp_path, seen + 1))
            assert got == [expected(n) for n in range(seen + 1, seen + 1 + len(got))]
            seen += len(got)
            start = max(1, seen - 5)
            inproc = [r.lsn for r in j.read(start)]
            assert inproc == list(range(start, start + len(inproc)))
            assert start + len(inproc) > seen  # it sees at least what the other reader saw
            if finished and seen == total:
                break
        t.join()


def test_read_is_bounded_by_accepted(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 10)
        assert [r.lsn for r in j.read(8, 99)] == [8, 9, 10]
        assert list(j.read(11)) == []
        assert [r.lsn for r in j.read(3, 4)] == [3, 4]


def test_release_before_deletes_only_covered_segments(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 60)
        firsts: dict[Path, int] = {}
        for record in disk_records(tmp_path):
            firsts.setdefault(record.path, record.lsn)
        ordered = sorted(firsts.items())
        assert len(ordered) >= 4
        # every record of the first two segments is < the third segment's first LSN
        cut = ordered[2][1]
        assert j.release_before(cut) == 2
        assert j.release_before(cut) == 0
        assert not ordered[0][0].exists() and not ordered[1][0].exists()
        assert ordered[2][0].exists()
        assert [r.lsn for r in j.read()] == list(range(cut, 61))
        assert j.release_before(10**9) == len(ordered) - 3  # never the current segment
        fill(j, 1)
    with open_journal(tmp_path) as j:
        assert j.recovery.last_lsn == 61
        assert [r.lsn for r in read_journal(tmp_path)][-1] == 61


def test_release_before_keeps_the_retention_window(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 60)
        segments = sorted({record.path for record in disk_records(tmp_path)})
        assert len(segments) >= 5
        # Everything is covered, but two segments' worth of bytes must stay besides the current.
        assert j.release_before(10**9, keep_bytes=2 * SEG) == len(segments) - 3
        assert [p.exists() for p in segments] == [False] * (len(segments) - 3) + [True] * 3


# --- a resumable reader --------------------------------------------------------------------


def reader_mappings(directory: Path) -> list[str]:
    """Segment files of ``directory`` this process maps read-only (readers only: the writer
    maps read-write)."""
    with open("/proc/self/maps") as maps:
        lines = [line.split() for line in maps]
    return sorted(
        Path(f[5]).name
        for f in lines
        if len(f) > 5 and f[1] == "r--s" and f[5].startswith(str(directory))
    )


def test_a_resumed_reader_returns_each_record_once_across_appends(tmp_path: Path) -> None:
    with open_journal(tmp_path, segment_bytes=1 << 20) as j:
        reader = read_journal(tmp_path)
        seen: list[JournalRecord] = []
        for burst in (1, 0, 7, 3, 0, 40):
            fill(j, burst)
            seen += list(reader)  # iterating stops at the end written so far, keeping its place
            assert [r.lsn for r in seen] == list(range(1, j.accepted_lsn + 1))
        fill(j, 5)
        for record in reader:
            seen.append(record)
            break  # what iteration read ahead is not lost
        seen += reader.take(2) + reader.take(100)
        assert seen == [expected(n) for n in range(1, 57)]
        assert reader.damage is None
        reader.close()
        fill(j, 1)
        assert reader.take(10) == []


def test_a_resumed_reader_follows_rollovers_and_unmaps_what_it_left(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        reader = read_journal(tmp_path, 3)
        got: list[int] = []
        while j.write_offset[0] < 6:
            fill(j, 2)
            got += [r.lsn for r in reader.take(3)]
            # the segment it reads and at most the one after it (once prepared), never more
            assert len(reader_mappings(tmp_path)) <= 2
        got += [r.lsn for r in reader.take(10**6)]
        assert got == list(range(3, j.accepted_lsn + 1))
        assert reader_mappings(tmp_path)[0] == segment_path(tmp_path, 6).name
        reader.close()
        assert reader_mappings(tmp_path) == []


def test_a_record_written_between_the_miss_and_the_rollover_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader finds no record at its place, then looks whether the next segment holds one.
    # If the writer meanwhile filled this segment's last record and rolled over, that record
    # must still be read, before the next segment's (not skipped, not taken for damage).
    with open_journal(tmp_path) as j:
        fill(j, 1)
        reader = read_journal(tmp_path)
        assert [r.lsn for r in reader] == [1]
        following = JournalReader._following

        def writer_runs_first(self: JournalReader, index: int, prev: int) -> object:
            if j.write_offset[0] == 0:  # once: the first miss, in segment 0
                while j.write_offset[0] == 0:
                    fill(j, 1)  # the last ones fit here; the next rolls over
            return following(self, index, prev)

        monkeypatch.setattr(JournalReader, "_following", writer_runs_first)
        got = [r.lsn for r in reader.take(10**6)]
        monkeypatch.undo()
        got += [r.lsn for r in reader.take(10**6)]
        assert reader.damage is None
        assert got == list(range(2, j.accepted_lsn + 1))
        reader.close()


def test_a_prepared_empty_next_segment_does_not_move_the_reader(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 3)
    prepared = segment_path(tmp_path, 1)
    assert prepared.exists() and not [r for r in disk_records(tmp_path) if r.path == prepared]
    reader = read_journal(tmp_path)
    assert [r.lsn for r in reader] == [1, 2, 3]
    assert list(reader) == []  # polled again at the end: still in segment 0
    with open_journal(tmp_path) as j:
        fill(j, 2)  # written to segment 0, where the reader waits
        assert j.write_offset[0] == 0
    assert [r.lsn for r in reader] == [4, 5]
    reader.close()


def test_take_stops_at_a_moving_bound_and_leaves_the_rest(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 30)
        reader = j.read(2)  # capped at 30, the accepted LSN when it was made
        assert [r.lsn for r in reader.take(10, upto=4)] == [2, 3, 4]
        assert reader.take(10, upto=4) == []
        assert [r.lsn for r in reader.take(3, upto=25)] == [5, 6, 7]
        assert next(reader).lsn == 8  # iteration reads ahead; take still continues after it
        assert [r.lsn for r in reader.take(100, upto=12)] == [9, 10, 11, 12]
        fill(j, 5)
        assert [r.lsn for r in reader.take(100)] == list(range(13, 31))
        follow = read_journal(tmp_path, 31)
        assert [r.lsn for r in follow.take(100, upto=33)] == [31, 32, 33]
        fill(j, 1)
        assert [r.lsn for r in follow.take(100, upto=j.accepted_lsn)] == [34, 35, 36]


def test_a_reader_keeps_reading_a_segment_retention_deleted(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 5)
        reader = read_journal(tmp_path)
        got = [r.lsn for r in reader.take(2)]
        while j.write_offset[0] < 4:
            fill(j, 1)
        second = [r.lsn for r in disk_records(tmp_path) if r.path == segment_path(tmp_path, 1)]
        assert j.release_before(second[0]) == 1
        assert not segment_path(tmp_path, 0).exists()  # the one the reader maps
        got += [r.lsn for r in reader.take(10**6)]
        assert got == list(range(1, j.accepted_lsn + 1))
        reader.close()


def test_a_reader_behind_retention_skips_to_the_oldest_segment_left(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 5)
        reader = read_journal(tmp_path)
        assert [r.lsn for r in reader.take(2)] == [1, 2]
        while j.write_offset[0] < 5:
            fill(j, 1)
        oldest_left = [r.lsn for r in disk_records(tmp_path) if r.path == segment_path(tmp_path, 3)]
        assert j.release_before(oldest_left[0]) == 3
        got = [r.lsn for r in reader.take(10**6)]
        # what was left of segment 0 (mapped), then on from the oldest segment left, as a new
        # reader from LSN 3 would
        in_segment_0 = [lsn for lsn in got if lsn < oldest_left[0]]
        assert in_segment_0 == list(range(3, len(in_segment_0) + 3))
        assert got[len(in_segment_0) :] == list(range(oldest_left[0], j.accepted_lsn + 1))
        assert [r.lsn for r in read_journal(tmp_path, 3)] == got[len(in_segment_0) :]
        reader.close()


def test_a_resumed_reader_reports_damage_and_stays_stopped(tmp_path: Path) -> None:
    with open_journal(tmp_path, segment_bytes=1 << 20) as j:
        fill(j, 40)
    reader = read_journal(tmp_path)
    assert [r.lsn for r in reader.take(10)] == list(range(1, 11))
    path, off, _ = locate(tmp_path, 20)
    flip_bit(path, off + REC)  # in the payload: the CRC fails
    assert [r.lsn for r in reader.take(100)] == list(range(11, 20))
    assert reader.damage is not None
    assert (reader.damage.offset, reader.damage.after_lsn, reader.damage.resumes_at) == (
        off,
        19,
        21,
    )
    assert reader.take(100) == [] and list(reader) == []
    fresh = read_journal(tmp_path, 11)
    assert [r.lsn for r in fresh][-1] == 19
    assert fresh.damage == reader.damage  # the same report as a new reader's


class _CountingSegment(Segment):
    """A segment that counts its header walks from the segment start (``seek``)."""

    seeks = 0

    def seek(self, lsn: int) -> tuple[int, int]:
        type(self).seeks += 1
        return super().seek(lsn)


def test_a_resumed_read_does_not_walk_the_segment_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "Segment", _CountingSegment)
    with open_journal(tmp_path, segment_bytes=1 << 22) as j:
        fill(j, 2000)
        reader = read_journal(tmp_path)
        assert len(reader.take(10**6)) == 2000
        assert _CountingSegment.seeks == 1  # placed once
        for _ in range(50):
            fill(j, 20)
            assert len(reader.take(10**6)) == 20
        assert _CountingSegment.seeks == 1  # and never again, however full the segment grew
        assert j.write_offset[0] == 0
        # the old way, a new reader per poll, walks the headers every time
        for _ in range(3):
            fill(j, 20)
            assert len(read_journal(tmp_path, j.accepted_lsn - 19).take(10**6)) == 20
        assert _CountingSegment.seeks == 4
        reader.close()


def test_a_reader_follows_a_prepared_segment_replaced_under_its_name(tmp_path: Path) -> None:
    with open_journal(tmp_path) as j:
        fill(j, 3)
    reader = read_journal(tmp_path)
    assert [r.lsn for r in reader] == [1, 2, 3]
    assert len(reader_mappings(tmp_path)) == 2  # segment 0 and the prepared segment 1
    # a recorder restarted with larger segments replaces the prepared one, then rolls into it
    with open_journal(tmp_path, segment_bytes=2 * SEG) as j:
        while j.write_offset[0] < 2:
            fill(j, 1)
        last = j.accepted_lsn
    assert [r.lsn for r in reader] == list(range(4, last + 1))
    reader.close()
