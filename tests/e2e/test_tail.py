"""`fastfeed tail` beside a running recorder: filtered, in seq order, exact bytes, lock-free."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from fastfeed import defaults
from fastfeed.sim.content import message
from tests.recording import build
from tests.test_readonly import damage_a_record

from .harness import FASTFEED, REPO, STOP_DEADLINE_S, JournalWatch, Recorder, Simulator, wait_for

__all__: list[str] = []

CHANNELS = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]}
FOLLOWED = ("depth", "TSLA.US")


class Tail:
    """``fastfeed tail ARGS`` with stdout in a file, read by polling (no blocking reads)."""

    def __init__(self, workdir: Path, name: str, *args: str) -> None:
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        self.args = [*FASTFEED, "tail", *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Tail:
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=out, stderr=err)
        return self

    def lines(self) -> list[bytes]:
        """The complete lines printed so far."""
        return self.out.read_bytes().split(b"\n")[:-1]

    def stop(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=STOP_DEADLINE_S)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_tail_follows_one_stream_across_a_recorder_restart(
    sim: Simulator, tmp_path: Path, data_dir: Path
) -> None:
    watch = JournalWatch(data_dir / "journal")
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        rec.start()
        before = rec.until(lambda: watch.poll().max_seq.get(FOLLOWED, 0) >= 20 and watch, "20")
        seen_before = before.max_seq[FOLLOWED]
        with Tail(
            tmp_path, "json", "--data-dir", str(data_dir), "--channel", "depth",
            "--symbol", "TSLA.US", "--format", "json",
        ) as tail:  # fmt: skip
            rec.until(lambda: len(tail.lines()) >= 100, "100 lines from tail")
            # The recorder restarts beside tail: tail never holds the journal lock.
            assert rec.stop(signal.SIGTERM) == 0
            restart_at = watch.poll().max_seq[FOLLOWED]
            rec.start()
            rec.until(lambda: _last_seq(tail.lines()) >= restart_at + 100, "100 more after")
            assert tail.stop(signal.SIGTERM) == 0
        rows: list[dict[str, Any]] = [orjson.loads(line) for line in tail.lines()]
    seqs = [row["seq"] for row in rows]
    # Started at the journal's end: nothing journaled before tail started is printed.
    assert seqs[0] > seen_before
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "not every seq once, in order"
    for row in rows[:50]:
        assert set(row) == {"venue", "channel", "symbol", "seq", "recv_ns", "frame"}
        assert (row["venue"], row["channel"], row["symbol"]) == ("tickdb", *FOLLOWED)
        assert row["frame"].encode() == message(defaults.SIM_SEED, *FOLLOWED, row["seq"])
    assert tail.err.read_text() == ""


def test_tail_from_start_text_lines_and_a_closed_pipe(
    sim: Simulator, tmp_path: Path, data_dir: Path
) -> None:
    watch = JournalWatch(data_dir / "journal")
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        rec.start()
        rec.until(lambda: watch.poll().max_seq.get(("trade", "BTC.CC"), 0) >= 10, "10 trades")
        with Tail(
            tmp_path, "text", "--data-dir", str(data_dir), "--channel", "trade", "--from-start"
        ) as tail:
            rec.until(lambda: len(tail.lines()) >= 10, "10 lines")
            assert tail.stop(signal.SIGINT) == 0
        first = tail.lines()[0].split(b" ", 4)
        assert first[1:4] == [b"trade:BTC.CC", b"seq", b"1"]
        assert first[0].endswith(b"Z") and first[4] == message(
            defaults.SIM_SEED, "trade", "BTC.CC", 1
        )
        # A reader that leaves (`fastfeed tail | head -1`): exit 0, nothing on stderr.
        proc = subprocess.Popen(
            [*FASTFEED, "tail", "--data-dir", str(data_dir), "--from-start"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline()
        proc.stdout.close()
        assert proc.wait(timeout=STOP_DEADLINE_S) == 0
        assert proc.stderr.read() == b""
        proc.stderr.close()
        assert rec.stop(signal.SIGTERM) == 0


def _last_seq(lines: list[bytes]) -> int:
    return int(orjson.loads(lines[-1])["seq"]) if lines else 0


def test_tail_from_start_reports_damage_and_goes_on_past_it(tmp_path: Path) -> None:
    data = build(tmp_path / "data", {("depth", "AAPL.US"): 100, ("trade", "BTC.CC"): 100})
    segment = damage_a_record(data, 50)
    with Tail(tmp_path, "tail", "--data-dir", str(data), "--from-start") as tail:
        wait_for(lambda: len(tail.lines()) >= 199, "every intact record printed")
        assert tail.stop(signal.SIGTERM) == 0
    assert len(tail.lines()) == 199  # all but the damaged one
    err = tail.err.read_text()
    assert f"journal damaged: {segment}" in err and "skipping to LSN 51" in err
