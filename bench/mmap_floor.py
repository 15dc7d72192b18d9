"""The floor under callback -> accepted: bench/mmap_floor.c, a bare C append into a shared mapping.

``python -m bench.mmap_floor [--rate 10000] [--count 40000]`` prints JSON: the time of one
frame-sized copy into a MAP_SHARED file mapping at a fixed rate, with no sync and with a thread
committing every group window as fastfeed's commit thread does. The gap between the two is what
the kernel adds (writeback write-protects the page being appended to; the next store faults),
whatever runs above it; bench/sink_latency.py reports it beside fastfeed's own figures.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import orjson

from fastfeed import defaults

SOURCE = Path(__file__).with_name("mmap_floor.c")
FRAME_BYTES = 205  # the hot-path benches' frame size (bench/sender.py)


def build(work: Path) -> Path:
    """Compile mmap_floor.c into ``work`` with the system C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench.mmap_floor: no C compiler (cc) on PATH")
    exe = work / "mmap_floor"
    subprocess.run([cc, "-O2", "-pthread", "-o", str(exe), str(SOURCE)], check=True)
    return exe


def floor(work: Path, rate: int, count: int, window_ms: float) -> dict[str, Any]:
    """Copy-time percentiles (µs) at ``rate``; ``window_ms`` 0: never synced."""
    exe = work / "mmap_floor"
    if not exe.exists():
        build(work)
    argv = [work / "floor.wal", rate, count, FRAME_BYTES, window_ms]
    out = subprocess.run(
        [str(exe), *map(str, argv)],
        check=True,
        capture_output=True,
    ).stdout
    result: dict[str, Any] = orjson.loads(out)
    return result


def both(work: Path, rate: int, count: int) -> dict[str, Any]:
    """The floor without syncs and with a commit every ``GROUP_COMMIT_MS``."""
    return {
        "no_sync": floor(work, rate, count, 0),
        "group_sync": floor(work, rate, count, defaults.GROUP_COMMIT_MS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mmap_floor")
    parser.add_argument("--rate", type=int, default=10_000, help="appends/s")
    parser.add_argument("--count", type=int, default=40_000, help="appends per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fffloor-") as tmp:
        print(orjson.dumps(both(Path(tmp), args.rate, args.count)).decode())


if __name__ == "__main__":
    main()
