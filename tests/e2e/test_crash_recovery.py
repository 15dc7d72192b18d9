"""kill -9 at random moments and restart each time: nothing sent goes missing or doubles."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import orjson

from .harness import JournalWatch, Recorder, Simulator, assert_exact, cli, stream_keys

__all__: list[str] = []

CHANNELS = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]}
KILLS = 12
SEED = 20241124  # fixes every kill moment, so a failure reproduces


def test_kill_9_at_random_moments_loses_nothing(
    sim: Simulator, tmp_path: Path, data_dir: Path
) -> None:
    rng = random.Random(SEED)
    watch = JournalWatch(data_dir / "journal")
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        for _ in range(KILLS):
            before = watch.poll().inbound
            connections = watch.connected
            # The kill moment, in frames journaled by this run: a few (mid-subscribe or inside
            # the resume burst) or many (steady state, snapshots and checkpoints in flight).
            more = rng.randint(1, 30) if rng.random() < 0.3 else rng.randint(30, 4000)
            rec.start()

            def due(c: int = connections, n: int = before + more) -> bool:
                return watch.poll().connected > c and watch.inbound >= n

            rec.until(due, f"{more} new frames in the journal")
            rec.kill()
            if rng.random() < 0.3:
                # An operator looks in between: `status` catches SQLite up from the journal the
                # dead recorder left, holding the journal lock the next start must wait for.
                assert cli("status", "--data-dir", str(data_dir)).returncode == 0
        seen = dict(watch.poll().max_seq)
        assert set(seen) == stream_keys(CHANNELS)
        rec.start()
        # The last run must resume past everything the killed runs journaled.
        rec.until(
            lambda: all(watch.poll().max_seq[k] >= seen[k] + 500 for k in seen),
            "the last run to record past the killed runs",
        )
        assert rec.stop(signal.SIGTERM) == 0
    lasts = assert_exact(data_dir, stream_keys(CHANNELS))
    # Everything any run journaled reached SQLite, and nothing past it was invented.
    assert lasts == watch.poll().max_seq
    assert watch.connected == KILLS + 1


def test_the_built_in_simulator_continues_across_recorder_restarts(
    tmp_path: Path, data_dir: Path
) -> None:
    """`--venue sim` stopped cleanly or killed, then started again: a clean record, no reset."""
    watch = JournalWatch(data_dir / "journal")
    key = ("depth", "AAPL.US")
    with Recorder(
        tmp_path, data_dir, "ws://unused", {"depth": ["AAPL.US"]}, "--venue", "sim"
    ) as rec:
        for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            then = watch.poll().max_seq.get(key, 0)
            rec.start()
            rec.until(lambda then=then: watch.poll().max_seq.get(key, 0) >= then + 200, "more")
            rec.send(sig)
            rec.wait()
    state = cli("status", "--data-dir", str(data_dir), "--format", "json")
    assert state.returncode == 0, state.stderr
    (stream,) = orjson.loads(state.stdout)["streams"]
    # One epoch, no gap, every seq from the first once: the three runs are one clean record.
    assert (stream["epoch"], stream["gaps_open"]) == (0, 0), stream
    assert stream["records"] == stream["last_seq"] - stream["first_seq"] + 1, stream
    ledger = cli("gaps", "--data-dir", str(data_dir), "--format", "json")
    assert orjson.loads(ledger.stdout) == []  # no venue reset, nothing lost
