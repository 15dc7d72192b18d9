"""SIGTERM -> exit 0 of `fastfeed run` behind a saturating feed, over several runs.

``python -m bench.sigterm [--runs N]`` writes bench/results/sigterm.json. Each run: a fresh
simulator in burst mode (it writes as fast as the socket takes) and a fresh data dir; the real
`fastfeed run` process records until ``WARM_RECORDS`` records are journaled and then for
``LOAD_S`` more seconds, still under load, and is sent SIGTERM; the clock runs from the signal
to its exit. ``--fsync always`` (one sync per socket read, before its frames are processed) is
measured side by side with the default ``group``, in alternating runs so that other work on the
machine hits both alike.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.buildcheck import require_release_build
from bench.load import DEPTH_LEVELS, channels
from bench.window import write_result
from fastfeed.journal import end_of_log
from tests.e2e.harness import REPO, Recorder, Simulator

MODES = ("always", "group")
STREAMS = 10
WARM_RECORDS = 2_000  # journaled before the load window starts: connected and saturated
LOAD_S = 3.0  # seconds under load before the signal


def run_once(mode: str) -> dict[str, Any]:
    """One recorder run in ``mode``; SIGTERM -> exit time, exit code, records journaled."""
    with tempfile.TemporaryDirectory(prefix="ffsigterm-") as tmp:
        work = Path(tmp)
        data = work / "data"
        sim_opts = ("--burst", "--depth-levels", DEPTH_LEVELS)
        subs = {"depth": channels(STREAMS).removeprefix("depth:").split(",")}
        with (
            Simulator(work, *sim_opts) as sim,
            Recorder(work, data, sim.url, subs, "--fsync", mode) as rec,
        ):
            rec.start()
            rec.until(
                lambda: (
                    (data / "journal").is_dir()
                    and end_of_log(data / "journal").last_lsn >= WARM_RECORDS
                ),
                f"{WARM_RECORDS} records journaled",
            )
            at_load = end_of_log(data / "journal").last_lsn
            time.sleep(LOAD_S)  # the load window: the feed keeps saturating the recorder
            at_signal = end_of_log(data / "journal").last_lsn
            sent_at, t0 = time.time(), time.monotonic()
            code = rec.stop(signal.SIGTERM)
            took = time.monotonic() - t0
            phases = _phases(rec.log(), sent_at, took)
        return {
            "mode": mode,
            "sigterm_exit_s": took,
            "exit_code": code,
            "records_per_s": (at_signal - at_load) / LOAD_S,
            "records_at_exit": end_of_log(data / "journal").last_lsn,
            **phases,
        }


# The recorder's log lines that mark the steps of a graceful stop (fastfeed/recorder/app.py).
_STEPS = (
    ("signal_handled_s", "SIGTERM: stopping"),  # the event loop took the signal
    ("connection_closed_s", "disconnected from"),  # the frames in hand journaled, socket closed
    ("journal_and_sqlite_s", "stopped: journal durable"),  # journal synced, final snapshot
)


def _phases(log: str, sent_at: float, took: float) -> dict[str, Any]:
    """Seconds each step of the stop took, from the JSON log's timestamps (wall clock)."""
    stamps: dict[str, float] = {}
    slow = False
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        doc = orjson.loads(line)
        msg = str(doc.get("msg", ""))
        slow = slow or msg.startswith("graceful shutdown took")
        for name, prefix in _STEPS:
            if msg.startswith(prefix) and doc["ts"] >= sent_at and name not in stamps:
                stamps[name] = doc["ts"]
    out: dict[str, Any] = {"over_shutdown_timeout": slow}
    last = sent_at
    for name, _ in _STEPS:
        if name in stamps:
            out[name] = stamps[name] - last
            last = stamps[name]
    out["process_exit_s"] = took - (last - sent_at)
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with few runs, p99 is the slowest run)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sigterm")
    parser.add_argument("--runs", type=int, default=10, help="runs per --fsync mode")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sigterm.json")
    args = parser.parse_args()
    require_release_build()
    runs = []
    for n in range(args.runs):
        for mode in MODES:
            res = run_once(mode)
            runs.append(res)
            print(
                f"{n + 1:>3} {mode:>6}: SIGTERM -> exit {res['sigterm_exit_s']:.2f} s,"
                f" code {res['exit_code']}, {res['records_per_s']:,.0f} records/s",
                flush=True,
            )
    summary = {}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        times = [r["sigterm_exit_s"] for r in mine]
        summary[mode] = {
            "runs": len(times),
            "p50_s": statistics.median(times),
            "p99_s": percentile(times, 99),
            "max_s": max(times),
            "all_exit_0": all(r["exit_code"] == 0 for r in mine),
            # Median seconds of each step of the stop.
            **{
                f"p50_{name}": statistics.median(r[name] for r in mine if name in r)
                for name in (*(n for n, _ in _STEPS), "process_exit_s")
            },
        }
        print(f"{mode:>6}: {summary[mode]}", flush=True)
    summary["always_over_group_p50"] = summary["always"]["p50_s"] / summary["group"]["p50_s"]
    write_result(
        args.out,
        {"streams": STREAMS, "load_s": LOAD_S, "summary": summary, "runs": runs},
    )


if __name__ == "__main__":
    main()
