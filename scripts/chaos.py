#!/usr/bin/env python3
"""Chaos run against the simulator: recorder kills and signals, venue faults, network cuts and
venue restarts, then an exact check of every stream; prints one verdict line, exits 1 on loss.

The engine is tests/e2e/chaos.py and tests/e2e/soak.py: they are built on the end-to-end
harness, which is test code, not part of the package. This is their command line; see
docs/reliability.md for the release-check commands and results.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.chaos import ChaosConfig, run_chaos  # (needs the repo root on sys.path)
from tests.e2e.flapping import FlapConfig, run_flapping
from tests.e2e.soak import SoakConfig, run_soak

CHANNELS = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"], "ticker": ["ETH.CC"]}


def _channels(count: int) -> dict[str, list[str]]:
    """``count`` streams spread over the three channels (soak)."""
    out: dict[str, list[str]] = {}
    for i in range(count):
        out.setdefault(("depth", "trade", "ticker")[i % 3], []).append(f"S{i}.US")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/chaos.py", description=__doc__)
    add = parser.add_argument
    add("--seed", type=int, help="schedule seed (default: random, printed)")
    add("--minutes", type=float, default=2.0, help="chaos length (default 2)")
    add("--rate", type=float, default=1000.0, help="messages/s per stream (default 1000)")
    add("--actions", type=int, default=3, help="recorder actions per venue lifetime")
    add("--soak-minutes", type=float, help="instead: a fault-free soak measuring recorder RSS")
    add("--soak-streams", type=int, default=6, help="streams in the soak (default 6)")
    add("--flapping", action="store_true", help="instead: a venue dropping every connection")
    add("--flap-seconds", type=float, default=30.0, help="how long it publishes (default 30)")
    add("--workdir", type=Path, help="keep data and logs here (default: a temporary dir)")
    ns = parser.parse_args(argv)
    seed = ns.seed if ns.seed is not None else random.randrange(1 << 31)
    with tempfile.TemporaryDirectory(prefix="fastfeed-chaos-") as tmp:
        workdir = ns.workdir or Path(tmp)
        if ns.flapping:
            flap = run_flapping(
                FlapConfig(workdir, seed, rate=max(ns.rate, 2000.0), seconds=ns.flap_seconds)
            )
            print(flap.line(), flush=True)
            ok, problems = flap.ok, flap.problems
        elif ns.soak_minutes is not None:
            soak = run_soak(
                SoakConfig(workdir, ns.soak_minutes, ns.rate, _channels(ns.soak_streams), seed)
            )
            print(soak.line(), flush=True)
            ok = soak.verdict.ok and soak.plateaued
            problems = soak.verdict.problems
        else:
            print(f"chaos seed={seed} (rerun with --seed {seed})", flush=True)
            config = ChaosConfig(
                workdir=workdir,
                seed=seed,
                segments=1_000_000,
                actions_per_segment=ns.actions,
                rate=ns.rate,
                channels=CHANNELS,
                minutes=ns.minutes,
            )
            verdict = run_chaos(config)
            print(verdict.line(), flush=True)
            ok, problems = verdict.ok, verdict.problems
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
