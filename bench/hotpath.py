"""Throughput against a venue that is never the bottleneck, every client in one run.

``python -m bench.hotpath [--quick]`` writes bench/results/hotpath.json: for each client
(bench/hotclient.py) and stream count, a fresh bench/sender.py serving the same pre-framed
burst; rounds interleave the clients so machine load hits them alike, and the medians are
compared as ratios to the transport limit of the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.buildcheck import require_release_build
from bench.window import write_result

REPO = Path(__file__).resolve().parents[1]
CLIENTS = ("transport", "ff-none", "ff-group", "ff-always", "naive-sqlite", "os-write")
SLOW = {"naive-sqlite": 5, "os-write": 2}  # run on 1/N of the frames: same rate, less waiting
STREAMS = (1, 10, 100, 1000)
RUN_LIMIT_S = 300.0


def one(kind: str, streams: int, frames: int) -> dict[str, Any]:
    """One run of client ``kind`` against a fresh sender of the burst; the client's report."""
    return against_sender(["bench.hotclient", kind], streams, frames, [], RUN_LIMIT_S)


def against_sender(
    client: list[str], streams: int, frames: int, sender_args: list[str], limit_s: float
) -> dict[str, Any]:
    """Run ``python -m *client`` against a fresh bench/sender.py serving ``frames`` over
    ``streams`` depth streams (plus ``sender_args``); returns the JSON the client wrote."""
    with tempfile.TemporaryDirectory(prefix="ffhot-") as tmp:
        work = Path(tmp)
        sender = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.sender"),
                *("--frames", str(frames), "--streams", str(streams), *sender_args),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sender.stdout is not None
            url = sender.stdout.readline().strip()  # printed once listening: the readiness wait
            syms = ",".join(f"S{i:04d}.US" for i in range(streams))
            out = work / "out.json"
            subprocess.run(
                [
                    *(sys.executable, "-m", *client, "--endpoint", url),
                    *("--channels", f"depth:{syms}", "--frames", str(frames)),
                    *("--work-dir", str(work / "client"), "--out", str(out)),
                ],
                cwd=REPO,
                check=True,
                timeout=limit_s,
            )
            doc: dict[str, Any] = orjson.loads(out.read_bytes())
        finally:
            sender.kill()
            sender.wait()
    return doc


def table(doc: dict[str, Any]) -> str:
    """The results as the markdown table docs/benchmarks.md shows (medians, ratios)."""
    med = doc["median"]
    lines = [
        "| client | streams | msgs/s | vs transport | vs naive | CPU µs/msg | SQLite done after |",
        "|---|---|---|---|---|---|---|",
    ]
    naive = med["naive-sqlite/10"]["msgs_per_s"]
    for streams in STREAMS:
        limit = med[f"transport/{streams}"]["msgs_per_s"]
        for kind in CLIENTS:
            m = med.get(f"{kind}/{streams}")
            if m is None:
                continue
            behind = m.get("sqlite_caught_up_s")
            lines.append(
                f"| {kind} | {streams} | {m['msgs_per_s']:,.0f} | {m['msgs_per_s'] / limit:.3f}x"
                f" | {m['msgs_per_s'] / naive:.1f}x | {m['cpu_us_per_msg']:.2f}"
                f" | {'' if behind is None else f'{behind:.1f} s'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--table", action="store_true", help="print the last run's table")
    args = parser.parse_args()
    if args.table:
        print(table(orjson.loads((REPO / "bench" / "results" / "hotpath.json").read_bytes())))
        return
    require_release_build()
    frames = 100_000 if args.quick else 400_000
    rounds = 1 if args.quick else args.rounds
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for streams in STREAMS:
            for kind in CLIENTS:
                if kind in SLOW and streams != 10:
                    continue  # the baselines do no per-stream work: one stream count is enough
                n = frames // SLOW.get(kind, 1)
                doc = one(kind, streams, n)
                runs.setdefault(f"{kind}/{streams}", []).append(doc)
                print(
                    f"{kind:>13} {streams:>5} streams: {doc['msgs_per_s']:>12,.0f} msgs/s",
                    flush=True,
                )
    result: dict[str, Any] = {
        "frames": frames,
        "rounds": rounds,
        "load_before": os.getloadavg(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "median": {
            name: {k: statistics.median(d[k] for d in docs) for k in docs[0] if k != "frames"}
            for name, docs in runs.items()
        },
        "runs": runs,
    }
    write_result(REPO / "bench" / "results" / "hotpath.json", result)


if __name__ == "__main__":
    main()
