"""Power loss without root: every sync goes through a hook that records what reached the disk,
and a simulated power cut builds the disk image from that plus a random subset of the pages
written since, with one page torn at 512-byte sector granularity. Recovery must keep every
durable record and never return one that was not written."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from e2e.harness import wait_for
from journal_format import SEGMENT_HEADER, read_log, segment_files

from fastfeed.journal import FsyncMode, Journal, JournalRecord
from fastfeed.journal.segments import segment_path

PAGE = 4096  # the unit the kernel writes back in
SECTOR = 512  # the unit a device writes atomically: a torn page mixes old and new sectors
SEG = 16 * 1024
SEEDS = 50
CYCLES = 2  # crash, recover, append more, crash again: recovery of a recovered log


class Disk:
    """What a power cut would leave of a journal directory, as told by the sync hook.

    ``durable[path]`` is the segment as of the syncs so far: each synced range is copied from
    the file when the hook is called. A segment never synced is its header and zeros, which
    create_segment fsyncs before the file gets its name.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()  # the commit thread calls the hook too
        self.durable = {str(p): bytearray(p.read_bytes()) for p in segment_files(directory)}
        self.synced = 0  # sync calls seen

    def _image(self, path: str, current: bytes) -> bytearray:
        if path not in self.durable:
            self.durable[path] = bytearray(current[: SEGMENT_HEADER.size]) + bytearray(
                len(current) - SEGMENT_HEADER.size
            )
        return self.durable[path]

    def sync_hook(self, path: str, start: int, end: int) -> int:
        """The journal's sync step: msync of [start, end) then fdatasync of ``path``.

        fdatasync writes every dirty page of the file, not only the range: the whole file
        as it is now reaches the disk (the header's durable mark included).
        """
        with self.lock:
            current = Path(path).read_bytes()
            self._image(path, current)[:] = current
            self.synced += 1
        return 0

    def power_cut(self, rng: random.Random, keep: float) -> dict[str, bytes]:
        """Segment name -> bytes on disk after a power cut now.

        Each page written since its last sync reached the disk with probability ``keep``; one
        such page (if any) is torn: each of its sectors is old or new at random.
        """
        with self.lock:
            images: dict[str, bytearray] = {}
            written: list[tuple[str, int, bytes]] = []  # (name, page offset, page as written)
            for path in segment_files(self.directory):
                current = path.read_bytes()
                image = bytearray(self._image(str(path), current))
                for page in range(0, len(current), PAGE):
                    new = current[page : page + PAGE]
                    if image[page : page + PAGE] != new:
                        written.append((path.name, page, new))
                        if rng.random() < keep:
                            image[page : page + PAGE] = new
                images[path.name] = image
            if written:
                name, page, new = rng.choice(written)
                for sector in range(0, PAGE, SECTOR):
                    if rng.random() < 0.5:
                        at = page + sector
                        images[name][at : at + SECTOR] = new[sector : sector + SECTOR]
        return {name: bytes(image) for name, image in images.items()}


def payload(cycle: int, lsn: int, size: int) -> bytes:
    """Distinct per cycle, so a lost record's stale bytes can never pass for a later one."""
    return (f"{cycle}:{lsn}:".encode() * (size // 4 + 1))[:size]


def run_seed(seed: int, base: Path) -> tuple[int, int]:
    """Crash and recover ``CYCLES`` times; return (records appended, cuts that left a hole)."""
    rng = random.Random(seed)
    written: dict[int, JournalRecord] = {}  # lsn -> the last record appended with that LSN
    appended = holes = 0
    directory = base / "0"
    directory.mkdir()
    for cycle in range(CYCLES):
        disk = Disk(directory)
        # NONE mode with syncs at seeded moments: the durable point is the same every run.
        with Journal.open(
            directory,
            segment_bytes=SEG,
            min_free_bytes=0,
            fsync=FsyncMode.NONE,
            sync_hook=disk.sync_hook,
        ) as j:
            for _ in range(rng.randrange(1, 300)):
                lsn = j.accepted_lsn + 1
                record = JournalRecord(
                    lsn, 1, cycle, 0, lsn, payload(cycle, lsn, rng.randrange(1200))
                )
                written[lsn] = record
                assert j.append(1, cycle, lsn, record.payload) == lsn
                appended += 1
                if rng.random() < 0.03:
                    j.sync()
            durable, accepted = j.durable_lsn, j.accepted_lsn
            # The preparer thread makes the next segment ahead, on its own time: cut once it
            # has, so the image depends on the seed alone.
            ahead = segment_path(directory, j.write_offset[0] + 1)
            wait_for(ahead.exists, f"{ahead.name} prepared")
            image = disk.power_cut(rng, keep=rng.choice([0.0, 0.3, 0.7, 1.0]))
        # The machine comes back with only what was on the disk.
        directory = base / str(cycle + 1)
        directory.mkdir()
        for name, data in image.items():
            (directory / name).write_bytes(data)
        # Pages written back out of order can leave valid records after a hole: past the
        # durable mark that is a torn tail, opened without --repair-journal.
        j = Journal.open(directory, segment_bytes=SEG, min_free_bytes=0)
        holes += j.recovery.records_dropped > 1
        with j:
            report = j.recovery
            last = report.last_lsn
            where = f"seed {seed} cycle {cycle}"
            assert durable <= last <= accepted, f"{where}: durable LSN {durable}, kept {last}"
            assert report.records_kept == last, where
            assert report.repaired == (report.bytes_dropped > 0), where
            want = [written[n] for n in range(1, last + 1)]
            assert list(j.read()) == want, where
            log = read_log(directory)
            assert [r.fields() for r in log.records] == [
                (w.lsn, w.kind, w.stream, w.flags, w.recv_ns, w.payload) for w in want
            ], where
            assert log.garbage == 0, where
        for lsn in range(last + 1, accepted + 1):
            del written[lsn]  # lost in the power cut: the next cycle appends new ones there
    return appended, holes


def test_power_cuts_keep_every_durable_record(tmp_path: Path) -> None:
    appended = holes = 0
    for seed in range(SEEDS):
        base = tmp_path / str(seed)
        base.mkdir()
        n, h = run_seed(seed, base)
        appended += n
        holes += h
    assert appended > SEEDS * CYCLES * 100
    # The schedule really produces holes followed by valid records, and recovery (checked
    # above) opened each without repair and kept every durable record.
    assert 0 < holes < SEEDS * CYCLES


def test_power_cut_is_repeatable(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert run_seed(7, tmp_path / "a") == run_seed(7, tmp_path / "b")
    for name in ("1", "2"):
        a, b = tmp_path / "a" / name, tmp_path / "b" / name
        assert [p.read_bytes() for p in segment_files(a)] == [
            p.read_bytes() for p in segment_files(b)
        ]
