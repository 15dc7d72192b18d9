"""CPU per frame of the recorder's hot path alone: FrameSink.on_ws_frame on prepared frames.

``python -m bench.sink_micro`` calls the sink's picows callback directly with picows' own test
frames (each marked last of its read), so what is timed is exactly the per-frame work: append
to the journal (--fsync none: no sync in the loop), C scan, table lookup. Over 1, 10, 100 and
1,000 streams round-robin: the lookup must not degrade. Prints JSON.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson
import picows

from bench.buildcheck import require_release_build
from bench.sender import payloads
from fastfeed.journal import FsyncMode, Journal
from fastfeed.recorder._sink import FrameSink, Scanner, StreamTable

FRAMES = 400_000


class _Python:
    """Counts what reaches Python (only each stream's first frame should)."""

    def __init__(self) -> None:
        self.unusual = 0

    def on_unusual_frame(self, *_: object) -> None:
        self.unusual += 1

    def on_journal_error(self, exc: Exception) -> None:
        raise exc


def run(streams: int) -> dict[str, float]:
    make = picows.picows._make_test_ws_frame
    frames = [make(picows.WSMsgType.TEXT, p, True, False) for p in payloads(FRAMES, streams, 3)]
    with tempfile.TemporaryDirectory(prefix="ffsink-") as tmp:
        journal = Journal.open(Path(tmp), fsync=FsyncMode.NONE, segment_bytes=256 * 1024 * 1024)
        with journal:
            python = _Python()
            sink = FrameSink(
                journal.writer, Scanner("tickdb"), StreamTable(), python, None, 1, None
            )
            on_frame = sink.on_ws_frame
            t0, c0 = time.perf_counter(), time.process_time()
            for frame in frames:
                on_frame(None, frame)
            t1, c1 = time.perf_counter(), time.process_time()
    assert python.unusual == streams, python.unusual
    return {
        "streams": streams,
        "ns_per_frame": (t1 - t0) * 1e9 / FRAMES,
        "cpu_ns_per_frame": (c1 - c0) * 1e9 / FRAMES,
    }


def main() -> None:
    require_release_build()
    results = [run(n) for n in (1, 10, 100, 1000)]
    sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
