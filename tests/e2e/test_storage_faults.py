"""Storage faults a running recorder must survive: disk full, a failed sync, a long SQLite
reader, mid-segment corruption and a data dir of another format version.

Each ends the way an operator would check it: the exit code, one line on stderr, and then a
restart whose export is exact (the venue's replay fills what the fault cut off).
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from fastfeed.datadir import DATA_DIR_FORMAT_VERSION

from .harness import (
    REPO,
    JournalWatch,
    Recorder,
    Simulator,
    assert_exact,
    cli,
    status,
    stream_keys,
)

__all__: list[str] = []

CHANNELS = {"depth": ["AAPL.US"], "trade": ["BTC.CC"]}
CHANNELS_K = stream_keys(CHANNELS)
MORE = 500  # seqs per stream a restarted recorder must record past the previous run's end
# The small file system: two segments (the current one and the one prepared after it), then a
# few seconds of recording at the simulator's rate.
DISK_MIB = 40
SEGMENT_MIB = 17  # the least that holds the largest frame accepted (MAX_FRAME_BYTES)
MIN_FREE_MIB = 3  # what the journal leaves for SQLite's last snapshot once it stops
LAUNCHER = Path(__file__).with_name("failing_sync.py")


def assert_one_line_refusal(rec: Recorder, run: int, pattern: str) -> str:
    """The run's stderr holds one plain line, the CLI's refusal, matching ``pattern``.

    Every other stderr line is a JSON log line (they may be flushed after the refusal).
    """
    lines = rec.outputs[2 * run - 1].read_text(errors="replace").splitlines()
    plain = [line for line in lines if not line.startswith("{")]
    assert len(plain) == 1, f"expected one plain line on stderr, got {plain[:20]}"
    assert plain[0].startswith("fastfeed: "), plain[0]
    assert re.search(pattern, plain[0]), f"{pattern!r} not in {plain[0]!r}"
    return plain[0]


def applied_lsn(data_dir: Path) -> int:
    """SQLite's applied LSN read directly (``status`` would first catch it up)."""
    with sqlite3.connect(f"file:{data_dir / 'fastfeed.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT value FROM checkpoint WHERE key='applied_lsn'").fetchone()
    return int(row[0]) if row else 0


def resume_and_check(rec: Recorder, watch: JournalWatch) -> dict[tuple[str, str], int]:
    """Start again, record MORE past what was journaled, stop, and check the export is exact."""
    seen = dict(watch.poll().max_seq)
    rec.start()
    rec.until(
        lambda: all(watch.poll().max_seq.get(k, 0) >= seen.get(k, 0) + MORE for k in CHANNELS_K),
        "the restarted recorder to record past the previous run",
    )
    assert rec.stop(signal.SIGTERM) == 0
    return assert_exact(rec.data_dir, CHANNELS_K)


# --- disk full --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A DISK_MIB tmpfs mounted for this test (root only; skipped with the reason otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    size = f"size={DISK_MIB}m,mode=0700"
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a {DISK_MIB} MiB tmpfs (needs root): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_stops_cleanly_and_a_restart_with_room_fills_the_gap(
    small_disk: Path, tmp_path: Path
) -> None:
    data_dir = small_disk / "data"
    watch = JournalWatch(data_dir / "journal")
    knobs = ("--segment-mib", str(SEGMENT_MIB), "--min-free-mib", str(MIN_FREE_MIB))
    with (
        Simulator(tmp_path, rate=3000.0) as sim,
        Recorder(tmp_path, data_dir, sim.url, CHANNELS, *knobs) as rec,
    ):
        rec.start()
        # Nobody stops it: the disk filling up does, on its own, with one line and exit 1.
        assert rec.wait() == 1
        # Whichever writer met the full disk first (the journal's free-space check or an
        # SQLite commit) names it; the other one's failure is only logged.
        assert_one_line_refusal(rec, 1, r"bytes free, need|database or disk is full")
        journaled = watch.poll().last_lsn
        assert watch.inbound > 1000, "the disk filled before any real recording"
        assert len(list((data_dir / "journal").glob("seg-*.wal"))) > 1
        # SQLite never claims more than the journal holds; what it lacks, the journal has.
        assert 0 < applied_lsn(data_dir) <= journaled
        # The operator makes room; the restart resumes and the venue's replay fills the gap.
        subprocess.run(
            ["mount", "-o", f"remount,size={8 * DISK_MIB}m", str(small_disk)], check=True
        )
        assert status(data_dir)["applied_lsn"] == journaled  # every accepted record, intact
        resume_and_check(rec, watch)


# --- sync failure -----------------------------------------------------------------------------


def test_sync_failure_is_fatal_nothing_acknowledged_after_and_recovery_is_clean(
    sim: Simulator, tmp_path: Path, data_dir: Path
) -> None:
    trigger, report = tmp_path / "fail-syncs-now", tmp_path / "sync-report.json"
    watch = JournalWatch(data_dir / "journal")
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        plain_args = rec.args
        rec.args = [sys.executable, str(LAUNCHER), str(trigger), str(report), *rec.args[3:]]
        rec.start()
        rec.until(lambda: watch.poll().inbound >= 2000, "recording before the fault")
        trigger.touch()
        assert rec.wait() == 1
        assert_one_line_refusal(rec, 1, r"syncing journal segment .* failed: Input/output error")
        facts = orjson.loads(report.read_bytes())
        assert facts["failed_syncs"] >= 1
        # Nothing became durable after the failed sync, and SQLite (read directly, before any
        # catch-up) claims nothing beyond it.
        assert facts["durable_at_exit"] == facts["durable_at_failure"]
        assert applied_lsn(data_dir) <= facts["durable_at_failure"]
        # A plain restart (syncs work again) recovers and resumes exactly.
        rec.args = plain_args
        resume_and_check(rec, watch)


# --- a long reader on the SQLite file ---------------------------------------------------------

READER = """
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None)
db.execute("BEGIN")
q = "SELECT value FROM checkpoint WHERE key='applied_lsn'"
print(db.execute(q).fetchone()[0], flush=True)  # the read transaction is now open
sys.stdin.readline()  # held until the test has seen recording go on without it
print(db.execute(q).fetchone()[0], flush=True)
"""


def test_a_long_sqlite_reader_does_not_stall_recording(
    sim: Simulator, tmp_path: Path, data_dir: Path
) -> None:
    watch = JournalWatch(data_dir / "journal")
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        rec.start()
        rec.until(lambda: status(data_dir).get("applied_lsn", 0) > 0, "a first snapshot")
        with subprocess.Popen(
            [sys.executable, "-c", READER, str(data_dir / "fastfeed.db")],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as reader:
            assert reader.stdout is not None and reader.stdin is not None
            held = int(reader.stdout.readline())
            start = watch.poll().last_lsn
            # While the read transaction is open, the journal keeps taking frames and
            # snapshots keep committing past the reader's view.
            rec.until(lambda: watch.poll().last_lsn >= start + 5000, "the journal to advance")
            rec.until(
                lambda: status(data_dir)["applied_lsn"] >= start + 2000,
                "snapshots to commit past the reader",
            )
            reader.stdin.write("\n")
            reader.stdin.flush()
            assert int(reader.stdout.readline()) == held  # its snapshot stayed consistent
            reader.stdin.close()
            assert reader.wait(timeout=30) == 0
        released = watch.poll().last_lsn
        rec.until(
            lambda: status(data_dir)["applied_lsn"] >= released, "SQLite to reach the journal"
        )
        assert rec.stop(signal.SIGTERM) == 0
    assert_exact(data_dir, CHANNELS_K)


# --- corruption in the middle of a segment ----------------------------------------------------


def test_mid_segment_corruption_is_refused_with_segment_and_offset_then_repaired(
    sim: Simulator, tmp_path: Path, data_dir: Path
) -> None:
    watch = JournalWatch(data_dir / "journal")
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        rec.start()
        rec.until(lambda: watch.poll().inbound >= 3000, "a few thousand frames journaled")
        assert rec.stop(signal.SIGTERM) == 0
        segment = sorted((data_dir / "journal").glob("seg-*.wal"))[0]
        raw = bytearray(segment.read_bytes())
        written = len(raw.rstrip(b"\0"))
        raw[written // 2] ^= 0xFF  # one flipped byte, valid records on both sides
        segment.write_bytes(raw)

        rec.start()
        assert rec.wait() == 1
        assert_one_line_refusal(rec, 2, rf"{segment.name}.* offset \d+.*--repair-journal")

        rec.args = [*rec.args, "--repair-journal"]
        # The repair truncates the journal at the damage; SQLite, which had applied past it,
        # is kept aside and rebuilt, and the venue's replay fills what the repair dropped.
        resume_and_check(rec, watch)
        messages = rec.log_messages()
        assert any(m.startswith("journal: ") and "repaired, dropped" in m for m in messages)
        assert len(list(data_dir.glob("fastfeed.db.before-repair-*"))) == 1


# --- a data dir of another format version -----------------------------------------------------


def test_a_data_dir_of_another_format_version_is_refused(
    sim: Simulator, tmp_path: Path, data_dir: Path
) -> None:
    data_dir.mkdir(mode=0o700)
    (data_dir / "FORMAT").write_text(f"{DATA_DIR_FORMAT_VERSION - 1}\n")
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        rec.start()
        assert rec.wait() == 1
        assert_one_line_refusal(rec, 1, f"has format version '{DATA_DIR_FORMAT_VERSION - 1}'")
    for command in ("status", "gaps", "export"):
        proc = cli(command, "--data-dir", str(data_dir))
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1 and "format version" in proc.stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["FORMAT"]  # nothing written into it
