"""Load runs on loopback: simulator and recorder (or baseline) as real processes, side by side.

``python -m bench.load [--quick]`` writes bench/results/load.json. Every configuration gets a
fresh simulator and data dir and the same measurement window (bench/window.py), so the ratios
compare runs made minutes apart on the same machine under the same conditions.
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
from tests.e2e.harness import REPO, Simulator, wait_for

DEPTH_LEVELS = "3"  # book levels per push: ~200-byte depth frames (~225 with the send stamp)
STREAM_COUNTS = (1, 10, 100)
LATENCY_STREAMS = 10
RATES = (1_000, 10_000, 100_000)  # msgs/s over all streams
FASTFEED = ("ff-none", "ff-group", "ff-always")
BASELINES = ("transport", "naive-sqlite", "os-write")
SIGTERM_LIMIT_S = 60.0  # SIGTERM -> exit longer than this is reported as "> 60" and killed
START_SLACK_S = 60.0  # process start, connect and the first frame, on a busy 2-core machine


def channels(streams: int) -> str:
    return "depth:" + ",".join(f"S{i:03d}.US" for i in range(streams))


def run_one(
    kind: str, streams: int, rate: int | None, *, latency: bool, warmup: float, duration: float
) -> dict[str, Any]:
    """One configuration: start a simulator, run ``kind`` against it, return its result."""
    sim_opts = ["--depth-levels", DEPTH_LEVELS, "--stamp-send-time"]
    if rate is None:
        sim_opts.append("--burst")
    with tempfile.TemporaryDirectory(prefix="ffbench-") as tmp:
        work = Path(tmp)
        out = work / "result.json"
        per_stream = (rate or 1000) / streams
        with Simulator(work, *sim_opts, rate=per_stream) as sim:
            common = ["--endpoint", sim.url, "--channels", channels(streams), "--out", str(out)]
            common += ["--warmup", str(warmup), "--duration", str(duration)]
            if latency:
                common.append("--latency")
            if kind.startswith("ff-"):
                fsync = kind.removeprefix("ff-")
                cmd = ["-m", "bench.probe", "--data-dir", str(work / "data"), "--fsync", fsync]
            else:
                cmd = ["-m", "bench.baselines", kind, "--work-dir", str(work / "client")]
            err = (work / "client.err").open("wb")
            proc = subprocess.Popen([sys.executable, *cmd, *common], cwd=REPO, stderr=err)
            try:
                wait_for(
                    lambda: out.exists() or proc.poll() is not None,
                    f"{kind} result",
                    timeout=START_SLACK_S + warmup + duration,
                )
                result: dict[str, Any] = {"kind": kind, "streams": streams, "rate": rate}
                if kind.startswith("ff-"):
                    # Still under load: time SIGTERM -> exit (graceful stop, final sync).
                    t0 = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
                    try:
                        code = proc.wait(timeout=SIGTERM_LIMIT_S)
                        result["sigterm_exit_s"] = time.monotonic() - t0
                    except subprocess.TimeoutExpired:
                        proc.kill()  # reported as "> limit", not a failed benchmark
                        code = proc.wait()
                        result["sigterm_exit_s"] = None
                else:
                    code = proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                err.close()
            if (code != 0 and result.get("sigterm_exit_s", 0) is not None) or not out.exists():
                tail = (work / "client.err").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{kind} x{streams} @ {rate}: exit {code}: {tail}")
            result.update(orjson.loads(out.read_bytes()))
            return result


def plan(quick: bool) -> list[tuple[str, int, int | None, bool]]:
    """(kind, streams, rate or None for saturation, latency?) for every run, in order."""
    runs: list[tuple[str, int, int | None, bool]] = []
    for streams in STREAM_COUNTS:
        for kind in (*BASELINES, *FASTFEED):
            runs.append((kind, streams, None, False))
    for rate in (*RATES, None):
        runs.append(("ff-group", LATENCY_STREAMS, rate, True))
        runs.append(("transport", LATENCY_STREAMS, rate, True))
    runs.append(("ff-always", LATENCY_STREAMS, 10_000, True))
    runs.append(("ff-none", LATENCY_STREAMS, 10_000, True))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--quick", action="store_true", help="short windows (development)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "load.json")
    args = parser.parse_args()
    require_release_build()
    warmup, duration = (1.0, 3.0) if args.quick else (2.0, 10.0)
    results = []
    for kind, streams, rate, latency in plan(args.quick):
        res = run_one(kind, streams, rate, latency=latency, warmup=warmup, duration=duration)
        w = res["window"]
        print(
            f"{kind:>13} x{streams:<3} {rate or 'burst'!s:>7} latency={latency!s:5} "
            f"{w['msgs_per_s']:>10.0f} msgs/s {w['cpu_us_per_msg'] or 0:6.1f} µs CPU/msg",
            flush=True,
        )
        res["latency_run"] = latency
        results.append(res)
    write_result(args.out, {"warmup_s": warmup, "duration_s": duration, "runs": results})


if __name__ == "__main__":
    main()
