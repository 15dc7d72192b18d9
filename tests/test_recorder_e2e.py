"""The recorder as users run it: real processes, loopback sockets, SIGKILL and SIGTERM.

A simulator subprocess publishes; a recorder subprocess is killed at random moments and
restarted; at the end every stream's export must be exactly seq 1..last with the simulator's
bytes, and no gap may stay open.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fastfeed.sim.content import StreamGenerator

SECRET = "sk-e2e-5ecret-key-0123456789"
STREAMS = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]}
DEADLINE_S = 60.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def fastfeed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastfeed", *args], capture_output=True, text=True, timeout=120
    )


@contextlib.contextmanager
def simulator(tmp_path: Path, *options: str) -> Iterator[str]:
    """A simulator subprocess publishing at 1000 msgs/s per stream; yields its URL."""
    log = (tmp_path / "sim.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastfeed", "sim", "--port", "0", "--rate", "1000", *options],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        match = re.search(r"ws://\S+", line)
        assert match, f"simulator said {line!r}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stdout.close()
        log.close()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[str]:
    with simulator(tmp_path) as url:
        yield url


class RecorderProcess:
    """Starts `fastfeed run` against the simulator with the key in the environment."""

    def __init__(self, url: str, data_dir: Path, log_path: Path, *options: str) -> None:
        self.url, self.data_dir, self.log_path = url, data_dir, log_path
        self.options = options

    def start(self) -> subprocess.Popen[bytes]:
        args = [
            sys.executable,
            "-m",
            "fastfeed",
            "run",
            "--endpoint",
            self.url,
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "json",
            *self.options,
        ]
        if "--config" not in self.options:
            for channel, symbols in STREAMS.items():
                args += ["--channels", f"{channel}:{','.join(symbols)}"]
        env = {**os.environ, "TICKDB_API_KEY": SECRET}
        with self.log_path.open("ab") as log:
            return subprocess.Popen(args, stdout=log, stderr=log, env=env)


def export(data_dir: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    proc = fastfeed("export", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    streams: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        streams.setdefault((row["channel"], row["symbol"]), []).append(row)
    return streams


def assert_exact(data_dir: Path) -> dict[tuple[str, str], int]:
    """Every stream is exactly seq 1..last with the simulator's bytes; no open gap."""
    streams = export(data_dir)
    assert set(streams) == {(c, s) for c, syms in STREAMS.items() for s in syms}
    lasts = {}
    for (channel, symbol), rows in streams.items():
        seqs = [r["seq"] for r in rows]
        assert seqs == list(range(1, len(seqs) + 1)), f"{channel}:{symbol} not 1..N"
        gen = StreamGenerator(1, channel, symbol)
        for row in rows:
            assert row["frame"].encode() == gen.next(), f"{channel}:{symbol} seq {row['seq']}"
        lasts[(channel, symbol)] = seqs[-1]
    gaps = json.loads(fastfeed("gaps", "--data-dir", str(data_dir), "--format", "json").stdout)
    assert [g for g in gaps if g["state"] == "open"] == []
    return lasts


def status(data_dir: Path) -> dict[str, Any]:
    proc = fastfeed("status", "--data-dir", str(data_dir), "--format", "json")
    return json.loads(proc.stdout) if proc.returncode == 0 else {"streams": []}


def test_kill_9_at_random_moments_loses_nothing(sim: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    rec = RecorderProcess(sim, data, tmp_path / "recorder.log")
    rng = random.Random(20261124)
    journal = data / "journal"

    def journal_size() -> int:
        return sum(p.stat().st_size for p in journal.glob("seg-*.wal")) if journal.is_dir() else 0

    log_path = tmp_path / "recorder.log"

    def connections() -> int:
        return log_path.read_text().count('"connected to') if log_path.exists() else 0

    for run in range(10):
        proc = rec.start()
        # Kill once the recorder has connected, at a random moment after that.
        wait_for(lambda n=run: connections() > n, "a connection")
        time.sleep(rng.uniform(0.05, 0.6))  # the random kill moment, not a wait for a condition
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert journal_size() > 0
    proc = rec.start()
    wait_for(lambda: len(status(data)["streams"]) == 3, "all streams in status")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    lasts = assert_exact(data)
    assert min(lasts.values()) > 100
    # The API key is in no file the recorder wrote and in no log line.
    for path in [*data.rglob("*"), tmp_path / "recorder.log"]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_second_sigterm_forces_exit_and_restart_recovers(sim: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    log_path = tmp_path / "recorder.log"
    rec = RecorderProcess(sim, data, log_path)
    proc = rec.start()
    wait_for(lambda: '"connected to' in log_path.read_text(), "a connection")
    wait_for(lambda: len(status(data)["streams"]) == 3, "all streams in status")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) in (0, 130)
    proc = rec.start()
    wait_for(lambda: log_path.read_text().count('"connected to') >= 2, "a reconnection")
    wait_for(lambda: all(s["last_seq"] > 200 for s in status(data)["streams"]), "progress")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert_exact(data)


# Frame faults hit the first connection only, so a second recorder run can converge.
FAULTS = {
    "skip": ["--fault-skip-rate", "0.02", "--fault-connections", "1"],
    "duplicate": ["--fault-duplicate-rate", "0.05", "--fault-connections", "1"],
    "reorder": ["--fault-reorder-rate", "0.05", "--fault-connections", "1"],
    "garbage": [
        "--fault-garbage-rate",
        "0.05",
        "--fault-garbage-kinds",
        "text,binary,truncated,shape",
        "--fault-connections",
        "1",
    ],
    "abort": ["--fault-abort-after", "400", "--fault-connections", "3"],
    "close": ["--fault-close-after", "400", "--fault-connections", "2"],
    "stall": [
        "--fault-stall-after",
        "300",
        "--fault-stall-seconds",
        "30",
        "--fault-connections",
        "1",
    ],
    "refuse": ["--fault-refuse-connections", "2"],
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_simulator_faults_end_exact(fault: str, tmp_path: Path) -> None:
    """Record through the fault, stop, record again on a clean connection: nothing missing."""
    data = tmp_path / "data"
    log_path = tmp_path / "recorder.log"
    with simulator(tmp_path, *FAULTS[fault]) as url:
        rec = RecorderProcess(url, data, log_path, "--stall-timeout", "1")
        proc = rec.start()
        try:
            wait_for(
                lambda: (
                    len(status(data)["streams"]) == 3
                    and all(s["last_seq"] > 1500 for s in status(data)["streams"])
                ),
                "recording through the faults",
            )
            faulty = status(data)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        proc = rec.start()
        try:
            wait_for(lambda: log_path.read_text().count("recovered:") == 2, "the second start")
            wait_for(
                lambda: (
                    (s := status(data))["gaps_open"] == 0
                    and all(st["last_seq"] > 2000 for st in s["streams"])
                ),
                "a clean connection to fill every gap",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    assert_exact(data)
    if fault == "garbage":
        assert faulty["counters"]["malformed"] > 0
    if fault in ("abort", "close", "stall"):
        assert faulty["counters"]["reconnects"] >= 1
    if fault in ("skip", "reorder"):
        assert faulty["gaps_filled"] + faulty["gaps_open"] > 0
    if fault == "duplicate":
        assert sum(s["duplicates"] for s in faulty["streams"]) > 0


def test_plain_tickdb_disconnects_become_time_bounded_gaps(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log_path = tmp_path / "recorder.log"
    with simulator(
        tmp_path, "--plain-tickdb", "--fault-abort-after", "300", "--fault-connections", "2"
    ) as url:
        proc = RecorderProcess(url, data, log_path).start()
        try:
            wait_for(
                lambda: (
                    log_path.read_text().count('"connected to') >= 3
                    and len(status(data)["streams"]) == 3
                ),
                "two aborted connections and a third one",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    gaps = json.loads(fastfeed("gaps", "--data-dir", str(data), "--format", "json").stdout)
    by_stream: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for gap in gaps:
        by_stream.setdefault((gap["channel"], gap["symbol"]), []).append(gap)
    assert set(by_stream) == {(c, s) for c, syms in STREAMS.items() for s in syms}
    for stream_gaps in by_stream.values():
        # One per aborted connection, closed by the reconnect; the last one starts at the
        # shutdown and stays open-ended until the recorder runs again.
        *windows, since_shutdown = sorted(stream_gaps, key=lambda g: g["from_ns"])
        assert len(windows) >= 2
        for gap in stream_gaps:
            assert gap["from_seq"] is None and gap["to_seq"] is None
            assert gap["state"] == "lost"
        for gap in windows:
            assert gap["to_ns"] is not None and gap["from_ns"] < gap["to_ns"]
        assert since_shutdown["to_ns"] is None
    assert all(row["seq"] is None for rows in export(data).values() for row in rows)


def test_sighup_applies_a_channel_change_without_reconnecting(sim: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    log_path = tmp_path / "recorder.log"
    config = tmp_path / "fastfeed.toml"
    config.write_text('channels = ["depth:AAPL.US"]\n')
    proc = RecorderProcess(sim, data, log_path, "--config", str(config)).start()
    try:
        wait_for(lambda: len(status(data)["streams"]) == 1, "the first stream")
        config.write_text('channels = ["depth:AAPL.US", "trade:BTC.CC"]\n')
        proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: (
                [(s["channel"], s["symbol"]) for s in status(data)["streams"]]
                == [("depth", "AAPL.US"), ("trade", "BTC.CC")]
            ),
            "the added stream",
        )
        config.write_text('channels = ["trade:BTC.CC"]\n')
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "now recording trade:BTC.CC" in log_path.read_text(), "the removal")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert log_path.read_text().count('"connected to') == 1
    assert status(data)["counters"]["reconnects"] == 0
    aapl = [r["seq"] for r in export(data)[("depth", "AAPL.US")]]
    assert aapl == list(range(aapl[0], aapl[-1] + 1))


def test_zipapp_records_from_the_builtin_simulator(tmp_path: Path) -> None:
    """The README's main job: build dist/fastfeed.pyz, record from --venue sim, stop with SIGINT."""
    repo = Path(__file__).resolve().parent.parent
    build = subprocess.run(
        ["bash", "scripts/build_pyz.sh"], cwd=repo, capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, build.stderr[-2000:]
    pyz = repo / "dist" / "fastfeed.pyz"
    env = {**os.environ, "SHIV_ROOT": str(tmp_path / "shiv")}
    version = subprocess.run(
        [sys.executable, str(pyz), "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert version.stdout.strip().startswith("fastfeed ")
    data = tmp_path / "data"
    log_path = tmp_path / "pyz.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(pyz),
                "--venue",
                "sim",
                "--channels",
                "depth:AAPL.US,TSLA.US",
                "--channels",
                "trade:BTC.CC",
                "--data-dir",
                str(data),
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
    try:
        wait_for(lambda: "connected to" in log_path.read_text(), "the pyz recorder to connect")
        wait_for(lambda: len(status(data)["streams"]) == 3, "three recorded streams")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    state = json.loads(
        subprocess.run(
            [sys.executable, str(pyz), "status", "--data-dir", str(data), "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        ).stdout
    )
    assert {(s["venue"], s["channel"], s["symbol"]) for s in state["streams"]} == {
        ("sim", "depth", "AAPL.US"),
        ("sim", "depth", "TSLA.US"),
        ("sim", "trade", "BTC.CC"),
    }
    assert all(s["records"] > 0 for s in state["streams"])
