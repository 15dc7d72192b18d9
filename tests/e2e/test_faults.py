"""Every simulator fault, through one recorder run: the data ends exact and the fault is counted.

Frame faults (skip, duplicate, reorder, garbage) hit the first connection only, which the
simulator then aborts, so the run must also resume on a clean connection and fill what the
faulty one left open.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    JournalWatch,
    Recorder,
    Simulator,
    Stream,
    assert_exact,
    export,
    gaps,
    status,
    stream_keys,
)

__all__: list[str] = []

CHANNELS = {"depth": ["AAPL.US"], "trade": ["BTC.CC"]}
RATE = 1500.0  # msgs/s per stream
FIRST_CONNECTION_ONLY = ("--fault-connections", "1", "--fault-abort-after", "2000")
MORE_AFTER_FAULTS = 300  # seqs per stream recorded on the clean connection before stopping

Check = Callable[[dict[str, Any], JournalWatch, Recorder], None]


def _filled_seq_gaps(state: dict[str, Any], watch: JournalWatch, rec: Recorder) -> None:
    filled = [g for g in gaps(rec.data_dir) if g["state"] == "filled"]
    assert filled, "the fault opened no seq gap"
    assert all(g["from_seq"] is not None and g["from_seq"] <= g["to_seq"] for g in filled)


def _duplicates(state: dict[str, Any], watch: JournalWatch, rec: Recorder) -> None:
    assert watch.duplicates > 0
    assert sum(s["duplicates"] for s in state["streams"]) == watch.duplicates


def _malformed(state: dict[str, Any], watch: JournalWatch, rec: Recorder) -> None:
    assert watch.garbage > 0
    assert state["counters"]["malformed"] == watch.garbage


def _reconnected(state: dict[str, Any], watch: JournalWatch, rec: Recorder) -> None:
    # Every connection ended with a disconnect record, the last one at the stop.
    assert [event for event, _ in watch.events] == ["connected", "disconnected"] * watch.connected


def _stall_detected(state: dict[str, Any], watch: JournalWatch, rec: Recorder) -> None:
    assert any(m.startswith("no frame for") for m in rec.log_messages())


def _refused(state: dict[str, Any], watch: JournalWatch, rec: Recorder) -> None:
    assert sum(m.startswith("cannot connect to") for m in rec.log_messages()) >= 1


def _rejected(state: dict[str, Any], watch: JournalWatch, rec: Recorder) -> None:
    assert state["counters"]["rejected"] == 1
    assert "venue refused subscribe (code 2002): Subscription rejected" in rec.log_messages()
    assert [(s["channel"], s["symbol"]) for s in state["streams"]] == [("trade", "BTC.CC")]


@dataclass(frozen=True)
class Fault:
    """One fault mode: simulator flags, the connections it takes, and its own evidence."""

    sim: tuple[str, ...]
    connections: int  # connections the run makes before the fault is over
    check: Check
    recorder: tuple[str, ...] = ()
    channels: dict[str, list[str]] = field(default_factory=lambda: CHANNELS)
    recorded: set[Stream] = field(default_factory=lambda: stream_keys(CHANNELS))


FAULTS = {
    "skip": Fault(("--fault-skip-rate", "0.02", *FIRST_CONNECTION_ONLY), 2, _filled_seq_gaps),
    "duplicate": Fault(("--fault-duplicate-rate", "0.05", *FIRST_CONNECTION_ONLY), 2, _duplicates),
    "reorder": Fault(("--fault-reorder-rate", "0.05", *FIRST_CONNECTION_ONLY), 2, _filled_seq_gaps),
    "garbage": Fault(
        (
            "--fault-garbage-rate",
            "0.05",
            "--fault-garbage-kinds",
            "text,binary,truncated,shape",
            *FIRST_CONNECTION_ONLY,
        ),
        2,
        _malformed,
    ),
    # A frame over the WebSocket size limit ends the connection, not the recorder.
    "oversized": Fault(
        (
            "--fault-garbage-rate",
            "0.01",
            "--fault-garbage-kinds",
            "oversized",
            "--fault-connections",
            "1",
        ),
        2,
        _reconnected,
    ),
    "abort": Fault(("--fault-abort-after", "700", "--fault-connections", "3"), 4, _reconnected),
    "close": Fault(("--fault-close-after", "700", "--fault-connections", "2"), 3, _reconnected),
    "stall": Fault(
        (
            "--fault-stall-after",
            "700",
            "--fault-stall-seconds",
            "30",
            "--fault-connections",
            "1",
        ),
        2,
        _stall_detected,
        recorder=("--stall-timeout", "1"),
    ),
    "refuse": Fault(("--fault-refuse-connections", "2"), 1, _refused),
    # The window opens when the simulator starts: long enough that a recorder starting on a
    # busy machine still meets it (1 s was sometimes over before the first connect).
    "refuse_seconds": Fault(("--fault-refuse-seconds", "4"), 1, _refused),
    "reject": Fault(
        ("--fault-reject-symbols", "TSLA.US"),
        1,
        _rejected,
        channels={"depth": ["TSLA.US"], "trade": ["BTC.CC"]},
        recorded={("trade", "BTC.CC")},
    ),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_ends_exact(name: str, tmp_path: Path, data_dir: Path) -> None:
    fault = FAULTS[name]
    watch = JournalWatch(data_dir / "journal")
    with (
        Simulator(tmp_path, *fault.sim, rate=RATE) as sim,
        Recorder(tmp_path, data_dir, sim.url, fault.channels, *fault.recorder) as rec,
    ):
        rec.start()
        rec.until(
            lambda: (
                watch.poll().connected >= fault.connections and set(watch.max_seq) == fault.recorded
            ),
            f"{fault.connections} connection(s) and every stream",
        )
        base = dict(watch.max_seq)
        rec.until(
            lambda: all(watch.poll().max_seq[k] >= base[k] + MORE_AFTER_FAULTS for k in base),
            "recording past the fault",
        )
        rec.until(lambda: status(data_dir)["gaps_open"] == 0, "every gap filled")
        assert rec.running(), rec.log()[-3000:]
        assert rec.stop(signal.SIGTERM) == 0
    assert assert_exact(data_dir, fault.recorded) == watch.poll().max_seq
    state = status(data_dir)
    assert state["counters"]["reconnects"] == watch.connected - 1
    fault.check(state, watch, rec)


def test_plain_tickdb_disconnects_become_time_bounded_gaps(tmp_path: Path, data_dir: Path) -> None:
    """Without seqs nothing can be resumed: each outage is a LOST gap between two instants."""
    watch = JournalWatch(data_dir / "journal")
    plain = ("--plain-tickdb", "--fault-abort-after", "600", "--fault-connections", "2")
    with (
        Simulator(tmp_path, *plain, rate=RATE) as sim,
        Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec,
    ):
        rec.start()
        rec.until(lambda: watch.poll().connected >= 3, "two aborted connections and a third")
        then = watch.inbound
        rec.until(lambda: watch.poll().inbound >= then + 600, "recording on the third")
        assert rec.stop(signal.SIGTERM) == 0
    watch.poll()
    connects = [ns for event, ns in watch.events if event == "connected"]
    drops = [ns for event, ns in watch.events if event == "disconnected"]
    assert len(connects) == 3 and len(drops) == 3
    by_stream: dict[Stream, list[dict[str, Any]]] = {}
    for gap in gaps(data_dir):
        by_stream.setdefault((gap["channel"], gap["symbol"]), []).append(gap)
    assert set(by_stream) == stream_keys(CHANNELS)
    for key, stream_gaps in by_stream.items():
        assert all(g["from_seq"] is None and g["to_seq"] is None for g in stream_gaps), key
        assert all(g["state"] == "lost" for g in stream_gaps), key
        *outages, since_stop = sorted(stream_gaps, key=lambda g: g["from_ns"])
        # One outage per aborted connection: from the stream's last message on the dropped
        # connection to its first on the next; the stop leaves one open-ended until the next run.
        assert len(outages) == 2, (key, stream_gaps)
        for i, gap in enumerate(outages):
            assert connects[i] <= gap["from_ns"] <= drops[i], (key, gap)
            assert connects[i + 1] <= gap["to_ns"] <= drops[i + 1], (key, gap)
        assert connects[2] <= since_stop["from_ns"] <= drops[2] and since_stop["to_ns"] is None
    rows = export(data_dir)
    assert set(rows) == stream_keys(CHANNELS)
    assert all(row["seq"] is None for stream_rows in rows.values() for row in stream_rows)
