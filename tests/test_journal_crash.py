"""Kill -9 a process appending to the journal at seeded moments: recovery keeps every accepted
record byte for byte, and the log ends cleanly right after the last one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from journal_crash_child import SEGMENT_BYTES, payload
from journal_format import read_log

from fastfeed.journal import Journal, JournalRecord, read_journal

CHILD = Path(__file__).with_name("journal_crash_child.py")
REPO = Path(__file__).resolve().parents[1]
KILLS = 24
KILLS_PER_DIRECTORY = 6  # the log grows across these; a fresh one keeps the full re-reads short
MAX_APPENDS_BEFORE_KILL = 2000
TIMEOUT_S = 60  # only a hung child gets near this


def expected(lsn: int) -> JournalRecord:
    return JournalRecord(lsn, 1, lsn % 5, lsn & 1, lsn, payload(lsn))


def run_until_killed(directory: Path, appends: int) -> tuple[int, int, int]:
    """Start the child and SIGKILL it once it has reported ``appends`` appends.

    Returns the LSN it recovered to, and the last accepted and durable LSNs it reported.
    """
    # -S skips site for a faster start; fastfeed comes from PYTHONPATH (the in-place build).
    proc = subprocess.Popen(
        [sys.executable, "-S", str(CHILD), str(directory)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    try:
        ready = proc.stdout.readline().split()
        assert ready[:1] == [b"ready"], f"child did not start: {ready!r}"
        start = accepted = durable = int(ready[1])
        for _ in range(appends):
            line = proc.stdout.readline()
            assert line, "child exited before it was killed"
            accepted, durable = map(int, line.split())
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(TIMEOUT_S) == -signal.SIGKILL
        # What it reported between our last read and its death counts as accepted too
        # (each line is a single write, so none is partial).
        for line in proc.stdout.read().splitlines():
            accepted, durable = map(int, line.split())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return start, accepted, durable


def test_kill_9_at_random_moments_loses_no_accepted_record(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    for kill in range(KILLS):
        directory = tmp_path / str(kill // KILLS_PER_DIRECTORY)
        directory.mkdir(exist_ok=True)
        appends = rng.choice([0, 1, rng.randrange(MAX_APPENDS_BEFORE_KILL)])
        start, accepted, durable = run_until_killed(directory, appends)
        assert accepted >= start + appends and durable <= accepted
        # The log as the independent reader sees it before recovery touches it: every
        # reported record is there and intact.
        before = read_log(directory)
        assert [r.fields() for r in before.records] == [
            (n, 1, n % 5, n & 1, n, payload(n)) for n in range(1, len(before.records) + 1)
        ]
        assert len(before.records) >= accepted, f"kill {kill}: accepted LSN {accepted} lost"
        with Journal.open(directory, segment_bytes=SEGMENT_BYTES, min_free_bytes=0) as j:
            last = j.recovery.last_lsn
            assert (last, j.recovery.records_kept) == (len(before.records), last)
            # Recovery zeroed any half-written record: after the last one there are only zeros.
            after = read_log(directory)
            assert len(after.records) == last and after.garbage == 0, f"kill {kill}"
            assert list(j.read(start + 1)) == [expected(n) for n in range(start + 1, last + 1)]
            nxt = last + 1
            assert j.append(1, nxt % 5, nxt, payload(nxt), nxt & 1) == nxt
        assert list(read_journal(directory, last + 1)) == [expected(nxt)]
