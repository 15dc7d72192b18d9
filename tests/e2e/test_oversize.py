"""A push over the frame size limit that the venue resends on every resume (issue 15, 2.2).

The simulator holds one push padded past 16 MiB; picows refuses it from its header (close
1009), so the recorder cannot tell which stream it belongs to. It must find the stream, record
exactly that seq as lost, move on, and lose nothing else.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import orjson

from fastfeed import defaults
from fastfeed.journal import RecordKind, read_journal
from fastfeed.sim.content import StreamGenerator

from .harness import JournalWatch, Recorder, Simulator, cli, export, gaps, status, stream_keys
from .test_metrics import _metrics_url, scrape

__all__: list[str] = []

CHANNELS = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC", "ETH.CC"]}
CULPRIT, SEQ = ("depth", "AAPL.US"), 300
SIZE = defaults.MAX_FRAME_BYTES + 1  # the simulator's default --fault-oversize-bytes
MORE = 1000  # seqs every stream records after the skip


def test_a_resent_oversized_push_is_found_lost_alone_and_skipped(
    tmp_path: Path, data_dir: Path
) -> None:
    watch = JournalWatch(data_dir / "journal")
    fault = ("--fault-oversize-push", f"{CULPRIT[0]}:{CULPRIT[1]}:{SEQ}")
    with (
        Simulator(tmp_path, *fault, rate=1000) as sim,
        Recorder(tmp_path, data_dir, sim.url, CHANNELS, "--metrics", "0") as rec,
    ):
        rec.start()
        base = rec.until(lambda: _metrics_url(rec), "the metrics address in the log")
        marker = rec.until(lambda: _marker(data_dir), "the oversized frame's marker")
        at_marker = dict(watch.poll().max_seq)
        # No stream is held up past the search: each records on from where it was.
        rec.until(
            lambda: all(watch.poll().max_seq.get(k, 0) >= at_marker[k] + MORE for k in at_marker),
            f"{MORE} more seqs on every stream after the skip",
        )
        rec.until(lambda: status(data_dir)["gaps_open"] == 0, "no gap open")
        oversized = ("fastfeed_oversized_frames_total", ())
        metrics = rec.until(
            lambda: (m := scrape(base)).get(oversized, 0) >= 1 and m, "the metric counting it"
        )
        assert rec.stop(signal.SIGTERM) == 0
    assert set(at_marker) == stream_keys(CHANNELS)
    assert marker == {
        "event": "oversized",
        "size": SIZE,
        "channel": CULPRIT[0],
        "symbol": CULPRIT[1],
        "seq": SEQ,
    }
    # Found by bisecting four streams: the first hit, a confirming retry, two halvings.
    assert 2 <= watch.connected - 1 <= 6, watch.connected
    # Exactly that seq is lost, and the ledger says why; no other gap, open or lost.
    ledger = [
        (g["channel"], g["symbol"], g["from_seq"], g["to_seq"], g["state"], g["reason"])
        for g in gaps(data_dir)
    ]
    reason = f"frame over the size limit ({SIZE} bytes)"
    assert ledger == [(*CULPRIT, SEQ, SEQ, "lost", reason)]
    # Every other seq of every stream is there once, with the simulator's bytes.
    streams = export(data_dir)
    assert set(streams) == stream_keys(CHANNELS)
    for (channel, symbol), rows in streams.items():
        gen = StreamGenerator(defaults.SIM_SEED, channel, symbol)
        want = [(seq, gen.next()) for seq in range(1, len(rows) + 2)]
        if (channel, symbol) == CULPRIT:
            del want[SEQ - 1]
        got = [(row["seq"], row["frame"].encode()) for row in rows]
        assert got == want[: len(rows)], (channel, symbol)
    # Counted in status and metrics; verify accepts the hole (it is in the ledger) and says so.
    assert status(data_dir)["counters"]["oversized"] == 1
    text = cli("status", "--data-dir", str(data_dir)).stdout
    assert "frames over the size limit skipped: 1 (their seqs: `gaps`)" in text, text
    assert metrics[oversized] == 1
    proc = cli("verify", "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "streams: 4, 1 seq holes, each in the gap ledger" in proc.stdout
    assert "1 frame over the size limit skipped" in proc.stdout
    assert any(
        re.match(rf"{CULPRIT[0]}:{CULPRIT[1]} seq {SEQ} is a frame over", m)
        for m in rec.log_messages()
    )


def _marker(data_dir: Path) -> dict[str, object] | None:
    """The first GAP "oversized" marker journaled, if any."""
    for record in read_journal(data_dir / "journal"):
        if record.kind == RecordKind.GAP:
            doc: dict[str, object] = orjson.loads(record.payload)
            if doc.get("event") == "oversized":
                return doc
    return None
