"""Start-up: the zipapp against ``python -m fastfeed`` from a venv, measured in the same run.

Four timings, each the median of ``--runs`` process starts (clock from just before the spawn):

* ``help_first``: ``fastfeed.pyz --help`` into an empty SHIV_ROOT (unpacks the archive);
* ``help``: ``--help`` again, the archive unpacked;
* ``run``: ``--venue sim --channels depth:AAPL.US`` to the log line ``connected to``, then SIGTERM;
* the same ``help`` and ``run`` with a venv's ``python -m fastfeed`` (fastfeed installed with
  ``pip install .``, not editable: what a pip user runs).

``python -m bench.startup [--runs N]`` (after ``bash scripts/build_pyz.sh``) writes
bench/results/startup.json; docs/operations.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.window import write_result
from tests.e2e.harness import REPO

PYZ = REPO / "dist" / "fastfeed.pyz"
VENV = REPO / "build" / "bench-venv"
# An empty venv runs the archive: a clean python3 as on a server, without the packages (and
# their .pth start-up hooks) of whichever interpreter runs this script.
BARE = REPO / "build" / "bench-bare"
RESULT = REPO / "bench" / "results" / "startup.json"
RUN_ARGS = ("--venue", "sim", "--channels", "depth:AAPL.US", "--log-format", "json")
CONNECT_TIMEOUT_S = 60.0


def venv_python() -> str:
    """A venv with fastfeed installed from this tree (made once, reinstalled every run)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)], check=True)
    return str(python)


def bare_python() -> str:
    """An interpreter with nothing installed."""
    python = BARE / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(BARE)], check=True)
    return str(python)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds for ``cmd`` to run to completion (it must exit 0)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def to_connected(cmd: list[str], env: dict[str, str], data_dir: Path) -> float:
    """Seconds from spawn to the recorder's ``connected to`` log line; then stops it."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, *RUN_ARGS, "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # ends when the process does: no line means it failed
            if b"connected to" in line:
                return time.perf_counter() - t0
        raise RuntimeError(f"{cmd} exited {proc.wait()} before connecting")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=CONNECT_TIMEOUT_S)


def measure(runs: int) -> dict[str, Any]:
    venv = venv_python()
    env = {k: v for k, v in os.environ.items() if k != "TICKDB_API_KEY"}
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="ffbench-startup-") as tmp:
        work = Path(tmp)
        pyz = [bare_python(), str(PYZ)]
        mod = [venv, "-m", "fastfeed"]
        for i in range(runs):  # interleaved, so load on the machine hits both sides alike
            fresh = {**env, "SHIV_ROOT": str(work / f"root-{i}")}
            warm = {**env, "SHIV_ROOT": str(work / "root-0")}
            for name, cmd, cmd_env in (
                ("pyz_help_first", pyz, fresh),
                ("pyz_help", pyz, warm),
                ("venv_help", mod, env),
            ):
                samples.setdefault(name, []).append(timed([*cmd, "--help"], cmd_env))
            for name, cmd, cmd_env in (("pyz_run", pyz, warm), ("venv_run", mod, env)):
                data = work / f"{name}-{i}"
                samples.setdefault(name, []).append(to_connected(cmd, cmd_env, data))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "runs": runs,
        "python": sys.version.split()[0],
        "median_s": medians,
        "ratio_pyz_to_venv": {
            "help": medians["pyz_help"] / medians["venv_help"],
            "run_to_connected": medians["pyz_run"] / medians["venv_run"],
            "first_help": medians["pyz_help_first"] / medians["venv_help"],
        },
        "samples_s": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="starts per timing (default 10)")
    args = parser.parse_args()
    if not PYZ.exists():
        raise SystemExit(f"bench: {PYZ} is missing: run bash scripts/build_pyz.sh first")
    doc = measure(args.runs)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    write_result(RESULT, doc)
    for name, value in doc["median_s"].items():
        print(f"{name:16} {value * 1000:8.1f} ms")
    for name, value in doc["ratio_pyz_to_venv"].items():
        print(f"pyz/venv {name:16} {value:5.2f}x")


if __name__ == "__main__":
    main()
