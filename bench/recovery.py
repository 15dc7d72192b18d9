"""Recovery time: process start -> "resumed" (subscribed with resume) over a large journal.

The journal holds ``--journal-mib`` of ~260-byte depth frames over 10 streams; all but the last
``--unsnapshotted`` records are already in SQLite (applied by the recorder's own start-up
catch-up, run in-process and untimed: ``fastfeed status`` no longer writes SQLite). Then a
recorder (bench/probe.py: the real Recorder) starts against a simulator, and the clock runs from
just before its process is spawned to the moment its subscribe-with-resume is sent.

``python -m bench.recovery [--quick]`` writes bench/results/recovery.json.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.buildcheck import require_release_build
from bench.window import write_result
from fastfeed.datadir import prepare_data_dir
from fastfeed.journal import FsyncMode, Journal, RecordKind
from fastfeed.sim.content import StreamGenerator
from tests.e2e.harness import REPO, Simulator, wait_for
from tests.recording import catch_up

STREAMS = 10
MiB = 1024 * 1024


def fill(journal_dir: Path, gens: list[StreamGenerator], *, nbytes: int, records: int) -> int:
    """Append depth frames round-robin until ``nbytes`` or ``records`` (whichever is given)."""
    written = appended = 0
    with Journal.open(journal_dir, fsync=FsyncMode.NONE) as journal:
        while (nbytes and written < nbytes) or (records and appended < records):
            frame = gens[appended % len(gens)].next()
            journal.append(RecordKind.INBOUND, 1, time.time_ns(), frame)
            written += 32 + (len(frame) + 7) // 8 * 8
            appended += 1
    return appended


def measure(journal_mib: int, unsnapshotted: int) -> dict[str, Any]:
    symbols = [f"S{i:03d}.US" for i in range(STREAMS)]
    gens = [StreamGenerator(1, "depth", s) for s in symbols]
    with tempfile.TemporaryDirectory(prefix="ffbench-recovery-") as tmp:
        work = Path(tmp)
        data = prepare_data_dir(work / "data")
        t0 = time.monotonic()
        prefix = fill(data / "journal", gens, nbytes=journal_mib * MiB, records=0)
        with Journal.open(data / "journal", fsync=FsyncMode.NONE) as journal:
            catch_up(data, journal)  # the recorder's own start-up catch-up applies the prefix
        fill(data / "journal", gens, nbytes=0, records=unsnapshotted)
        setup_s = time.monotonic() - t0
        on_disk = sum(f.stat().st_size for f in (data / "journal").glob("seg-*.wal"))
        out = work / "result.json"
        with Simulator(work, rate=10.0) as sim:
            args = ["--endpoint", sim.url, "--channels", "depth:" + ",".join(symbols)]
            args += ["--data-dir", str(data), "--out", str(out)]
            spawned = time.monotonic_ns()
            probe = subprocess.Popen(
                [sys.executable, "-m", "bench.probe", *args],
                cwd=REPO,
                stderr=(work / "probe.err").open("wb"),
            )
            try:
                wait_for(lambda: out.exists() or probe.poll() is not None, "resume", 600)
                probe.send_signal(signal.SIGTERM)
                probe.wait(timeout=120)
            finally:
                if probe.poll() is None:
                    probe.kill()
                    probe.wait()
        if not out.exists():
            raise RuntimeError((work / "probe.err").read_text(errors="replace")[-2000:])
        doc = orjson.loads(out.read_bytes())
    return {
        "journal_mib": journal_mib,
        "journal_bytes_on_disk": on_disk,
        "snapshotted_records": prefix,
        "unsnapshotted_records": unsnapshotted,
        "setup_s": setup_s,
        "start_to_resumed_s": (doc["resumed_ns"] - spawned) / 1e9,
        "interpreter_start_s": (doc["started_ns"] - spawned) / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery")
    parser.add_argument("--quick", action="store_true", help="64 MiB journal, 10k records")
    parser.add_argument("--journal-mib", type=int, help="journal size (full run: 1024)")
    parser.add_argument("--unsnapshotted", type=int, help="records after SQLite's applied LSN")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "recovery.json")
    args = parser.parse_args()
    require_release_build()
    mib = args.journal_mib or (64 if args.quick else 1024)
    tail = args.unsnapshotted if args.unsnapshotted is not None else 10_000
    result = measure(mib, tail)
    write_result(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
