"""A journal on a real, small tmpfs that fills up: DiskFull, not SIGBUS, and nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from journal_crash_child import payload
from journal_format import read_log

from fastfeed.errors import DiskFull
from fastfeed.journal import Journal, JournalRecord

CHILD = Path(__file__).with_name("journal_crash_child.py")
REPO = Path(__file__).resolve().parents[1]
SEG = 64 * 1024
TIMEOUT_S = 60  # only a hung child gets near this

Mount = Callable[[str], Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """Mount a tmpfs with the given options under tmp_path; unmounted at teardown."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root (CI and the dev container run as root)")
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "fastfeed-test", str(point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


def expected(lsn: int) -> JournalRecord:
    return JournalRecord(lsn, 1, lsn % 5, lsn & 1, lsn, payload(lsn))


def fill_in_child(directory: Path) -> tuple[int, str]:
    """Append in a child process until DiskFull; return (last accepted LSN, the message)."""
    done = subprocess.run(
        [sys.executable, "-S", str(CHILD), str(directory), str(SEG)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=TIMEOUT_S,
        check=False,
    )
    # A store into an unallocated mapped page would be SIGBUS (-7): the child must exit 0.
    assert done.returncode == 0, (done.returncode, done.stderr.decode()[-2000:])
    lines = done.stdout.decode().splitlines()
    assert lines[0] == "ready 0" and lines[-1].startswith("disk-full "), lines[-3:]
    accepted = int(lines[-2].split()[0]) if len(lines) > 2 else 0
    return accepted, lines[-1].removeprefix("disk-full ")


def test_filling_a_tmpfs_raises_disk_full_and_keeps_every_record(tmpfs: Mount) -> None:
    mnt = tmpfs("size=1m")
    filler = mnt / "filler"
    filler.write_bytes(bytes(2 * SEG))  # deleted later to make room again
    directory = mnt / "journal"
    accepted, message = fill_in_child(directory)
    assert "not creating journal segment" in message or "disk full" in message
    assert accepted > 500  # most of the 1 MiB held records before it filled
    with Journal.open(directory, segment_bytes=SEG, min_free_bytes=0) as j:
        assert j.recovery.last_lsn == accepted and not j.recovery.repaired
        assert list(j.read()) == [expected(n) for n in range(1, accepted + 1)]
        big = bytes(SEG // 2)  # cannot fit in what is left of the current segment
        with pytest.raises(DiskFull):
            j.append(1, 0, 0, big)
        filler.unlink()  # the operator frees space: appending resumes without a restart
        assert j.append(1, 0, 0, big) == accepted + 1
    log = read_log(directory)
    assert len(log.records) == accepted + 1 and log.garbage == 0


def test_running_out_of_inodes_is_disk_full_too(tmpfs: Mount) -> None:
    # Room for bytes but only a few files: LOCK and the first segment, then no new segment.
    mnt = tmpfs("size=4m,nr_inodes=4")
    directory = mnt / "journal"
    accepted, message = fill_in_child(directory)
    assert message.startswith("disk full while creating journal segment")
    assert accepted > 10
    with Journal.open(directory, segment_bytes=SEG, min_free_bytes=0) as j:
        assert j.recovery.last_lsn == accepted
        assert list(j.read()) == [expected(n) for n in range(1, accepted + 1)]
