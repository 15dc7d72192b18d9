"""One measurement window, the same for fastfeed and every baseline client.

Wait for the first frame, let ``warmup_s`` pass (connect, subscribe, the first burst), then count
what was done in the next ``duration_s`` and the CPU time the whole process spent on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

POLL_S = 0.005  # first-frame poll: start-up only, not on any measured path


async def measure(
    count: Callable[[], int],
    warmup_s: float,
    duration_s: float,
    timing: Callable[[bool], None] | None = None,
) -> dict[str, Any]:
    """Msgs/s and CPU µs per msg over the window; ``count`` returns the running total.

    ``timing(True)``/``timing(False)`` bracket the window, for per-frame latency recording.
    """
    while count() == 0:
        await asyncio.sleep(POLL_S)
    await asyncio.sleep(warmup_s)
    if timing is not None:
        timing(True)
    t0, c0, n0 = time.monotonic(), time.process_time(), count()
    await asyncio.sleep(duration_s)
    t1, c1, n1 = time.monotonic(), time.process_time(), count()
    if timing is not None:
        timing(False)
    msgs = n1 - n0
    return {
        "msgs": msgs,
        "seconds": t1 - t0,
        "msgs_per_s": msgs / (t1 - t0),
        "cpu_s": c1 - c0,
        "cpu_us_per_msg": (c1 - c0) * 1e6 / msgs if msgs else None,
    }


def write_result(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically: the driver polls for the file and must never read half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    tmp.replace(path)


def sent_ns(frame: bytes) -> int | None:
    """The simulator's ``"sent_ns"`` stamp (monotonic ns), read without parsing the JSON."""
    at = frame.find(b'"sent_ns":')
    if at < 0:
        return None
    return int(frame[at + 10 : frame.index(b",", at)])
