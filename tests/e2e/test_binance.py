"""Binance end to end: `fastfeed run --venue binance` against the fixture venue on loopback.

The venue runs on a thread of the test process (tests/fixture_venue), the recorder in a
subprocess; what the venue served is compared with what `export` and `gaps` say.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastfeed.journal import RecordKind, read_journal
from tests.fixture_venue.binance import BinanceVenue, Faults
from tests.fixture_venue.thread import running

from .harness import Recorder, cli, export, gaps, status

NKN_DEPTH = "nknusdt@depth@100ms"
CHANNELS = {"depth": ["nknusdt", "BTCUSDT"], "aggTrade": ["NKNUSDT"]}
STREAMS = {NKN_DEPTH, "btcusdt@depth@100ms", "nknusdt@aggTrade"}


def recorder(tmp_path: Path, venue: BinanceVenue, *options: str) -> Recorder:
    return Recorder(
        tmp_path,
        tmp_path / "data",
        venue.ws_url,
        CHANNELS,
        "--venue",
        venue.market,
        "--rest-endpoint",
        venue.rest_url,
        *options,
        key=None,
    )


def served_pushes(venue: BinanceVenue) -> dict[str, list[bytes]]:
    """Every push served, by stream name, in send order (duplicates and all connections)."""
    out: dict[str, list[bytes]] = {}
    for _, frame in list(venue.served):
        if frame.startswith(b'{"stream":'):
            out.setdefault(orjson.loads(frame)["stream"], []).append(frame)
    return out


def last_ids(venue: BinanceVenue) -> dict[tuple[str, str], int]:
    """(channel, symbol) -> the last id served, for depth (u) and aggTrade (a) streams."""
    out = {}
    for name, frames in served_pushes(venue).items():
        data = orjson.loads(frames[-1])["data"]
        channel = "depth" if "@depth" in name else "aggTrade"
        out[(channel, data["s"])] = data["u"] if channel == "depth" else data["a"]
    return out


def recorded_ids(tmp_path: Path) -> dict[tuple[str, str], int]:
    """(channel, symbol) -> the last id the recorder derived (``status``)."""
    return {
        (s["channel"], s["symbol"]): s["last_seq"] for s in status(tmp_path / "data")["streams"]
    }


def caught_up(tmp_path: Path, venue: BinanceVenue) -> bool:
    """The recorder has derived the last push of every stream served."""
    want, got = last_ids(venue), recorded_ids(tmp_path)
    return len(want) == len(STREAMS) and all(got.get(k) == v for k, v in want.items())


def subscribed(venue: BinanceVenue, first_index: int) -> bool:
    """A connection opened since ``first_index`` has subscribed to every stream."""
    return any(c.index >= first_index and c.subs >= STREAMS for c in list(venue.clients))


def pause_and_drain(rec: Recorder, tmp_path: Path, venue: BinanceVenue) -> None:
    """Stop the venue's publisher, wait until the recorder has it all, stop the recorder."""
    venue.paused = True
    try:
        rec.until(lambda: caught_up(tmp_path, venue), "the recorder to derive every served push")
    except AssertionError as exc:
        detail = f"served {last_ids(venue)}, recorded {recorded_ids(tmp_path)}"
        raise AssertionError(f"{exc}: {detail}; log {rec.log()[-3000:]}") from None
    assert rec.stop() == 0


def verified(tmp_path: Path) -> None:
    """``fastfeed verify`` finds the data dir whole: every id hole is in the gap ledger."""
    proc = cli("verify", "--data-dir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def exported_frames(tmp_path: Path) -> tuple[set[bytes], list[dict[str, Any]]]:
    """Message frames exported, and the snapshot rows."""
    frames: set[bytes] = set()
    snapshots: list[dict[str, Any]] = []
    for rows in export(tmp_path / "data").values():
        for row in rows:
            if row["kind"] == "snapshot":
                snapshots.append(row)
            else:
                assert row["kind"] == "message"
                frames.add(row["frame"].encode())
    return frames, snapshots


@pytest.fixture
def faulty() -> Iterator[BinanceVenue]:
    faults = Faults(
        drop={NKN_DEPTH: {30, 31}}, duplicate={NKN_DEPTH: {40}}, reorder={NKN_DEPTH: {50}}
    )
    venue = BinanceVenue(faults=faults)
    with running(venue):
        yield venue


def test_export_is_every_served_frame_and_a_drop_is_exactly_its_ids(
    tmp_path: Path, faulty: BinanceVenue
) -> None:
    with recorder(tmp_path, faulty) as rec:
        rec.start()
        rec.until(
            lambda: faulty.streams.get(NKN_DEPTH) and faulty.streams[NKN_DEPTH].count > 80,
            "80 pushes of the faulty stream",
        )
        pause_and_drain(rec, tmp_path, faulty)
    served = served_pushes(faulty)
    frames, snapshots = exported_frames(tmp_path)
    # Byte for byte: every push served (a duplicate once), nothing else.
    assert frames == {f for name in STREAMS for f in served[name]}
    # Every snapshot body served with 200 is exported as a snapshot, exactly.
    bodies = [body for status_, body in faulty.snapshots if status_ == 200]
    assert sorted(s["frame"].encode() for s in snapshots) == sorted(bodies)
    # The two dropped pushes are exactly the lost range; the reorder filled its own gap.
    pushes = {orjson.loads(f)["data"]["U"]: orjson.loads(f)["data"] for f in served[NKN_DEPTH]}
    ordered = [pushes[k] for k in sorted(pushes)]
    holes = [(a["u"] + 1, b["U"] - 1) for a, b in pairwise(ordered) if b["U"] > a["u"] + 1]
    assert len(holes) == 1
    ledger = [g for g in gaps(tmp_path / "data") if g["channel"] == "depth"]
    lost = [g for g in ledger if g["state"] == "lost"]
    assert [(g["symbol"], g["from_seq"], g["to_seq"]) for g in lost] == [("NKNUSDT", *holes[0])]
    assert all(g["state"] == "filled" for g in ledger if g not in lost)
    after = holes[0][1] + 1
    nkn_snaps = [s for s in snapshots if s["symbol"] == "NKNUSDT"]
    assert any(s["seq"] >= after - 1 and s["recv_ns"] >= lost[0]["from_ns"] for s in nkn_snaps)
    assert "/api/v3/depth?symbol=NKNUSDT&limit=1000" in nkn_snaps[-1]["url"]
    verified(tmp_path)


def test_rotation_is_lossless(tmp_path: Path) -> None:
    # The venue closes connections at 2.5 s (its 24 h, compressed); we rotate at 1.5 s.
    venue = BinanceVenue("binance-futures", Faults(max_connection_s=2.5))
    with running(venue), recorder(tmp_path, venue, "--rotate-after", "1.5") as rec:
        rec.start()
        rec.until(lambda: venue.connections >= 4, "three rotations", timeout=60)
        pause_and_drain(rec, tmp_path, venue)
    served = served_pushes(venue)
    frames, _ = exported_frames(tmp_path)
    assert frames == {f for name in STREAMS for f in served[name]}
    assert [g for g in gaps(tmp_path / "data") if g["from_seq"] is not None] == []
    slots = {
        r.stream
        for r in read_journal(tmp_path / "data" / "journal")
        if r.kind == RecordKind.INBOUND
    }
    assert len(slots) >= 4  # every connection's frames journaled under its own slot
    assert venue.closed_by_age == 0  # every connection rotated before the venue's close
    verified(tmp_path)


def test_kill9_restarts_record_nothing_twice_and_ledger_every_gap(tmp_path: Path) -> None:
    venue = BinanceVenue()
    rng = random.Random(12)
    with running(venue), recorder(tmp_path, venue) as rec:
        for run in range(3):
            first_index = venue.connections
            rec.start()
            rec.until(lambda n=first_index: subscribed(venue, n), f"run {run} to subscribe all")
            # A random moment: after a random number of further pushes (the last run: a few,
            # so the last push of every stream reached it, not only a killed run's socket).
            later = venue.streams[NKN_DEPTH].count + (rng.randint(0, 30) if run < 2 else 5)
            rec.until(lambda t=later: venue.streams[NKN_DEPTH].count > t, "a random moment")
            if run < 2:
                rec.kill()
        pause_and_drain(rec, tmp_path, venue)
    rows = export(tmp_path / "data")
    ledger = gaps(tmp_path / "data")
    for (channel, symbol), stream in rows.items():
        msgs = [r for r in stream if r["kind"] == "message"]
        seqs = [r["seq"] for r in msgs]
        assert len(seqs) == len(set(seqs)), f"{channel}:{symbol} recorded twice"
        # Every hole between consecutive recorded pushes is a gap in the ledger.
        data = [orjson.loads(r["frame"])["data"] for r in msgs]
        key = "U" if channel == "depth" else "a"
        for (prev, nxt), seq in zip(pairwise(data), seqs, strict=False):
            if nxt[key] > seq + 1:
                assert any(
                    g["channel"] == channel
                    and g["symbol"] == symbol
                    and g["from_seq"] <= seq + 1
                    and g["to_seq"] >= nxt[key] - 1
                    # lost, or still open if the stop came within the reorder grace
                    and g["state"] in ("lost", "open")
                    for g in ledger
                ), (channel, symbol, seq, nxt[key], prev)
    verified(tmp_path)


def test_rest_429_waits_and_418_stops_snapshots(tmp_path: Path) -> None:
    venue = BinanceVenue(faults=Faults(rest_429=1, retry_after_s=1, rest_418_from=3))
    with running(venue), recorder(tmp_path, venue) as rec:
        rec.start()
        rec.until(lambda: len(venue.snapshots) >= 3, "a 429, a 200 and a 418")
        rec.until(lambda: "HTTP 418" in rec.log(), "the 418 logged")
        venue.faults.drop[NKN_DEPTH] = {venue.streams[NKN_DEPTH].count + 2}
        rec.until(
            lambda: any(g["state"] == "lost" for g in gaps(tmp_path / "data")),
            "the gap given up as lost",
        )
        pause_and_drain(rec, tmp_path, venue)
    assert [s for s, _ in venue.snapshots][:3] == [429, 200, 418]
    assert len(venue.snapshots) == 3  # nothing asked after the ban
    [lost] = [g for g in gaps(tmp_path / "data") if g["channel"] == "depth"]
    assert "418" in lost["reason"]


def test_three_hundred_symbols_just_work(tmp_path: Path) -> None:
    symbols = [f"S{i:03d}USDT" for i in range(300)]
    venue = BinanceVenue(tick_s=0.1)
    with running(venue):
        rec = Recorder(
            tmp_path,
            tmp_path / "data",
            venue.ws_url,
            {"depth": [s.lower() for s in symbols]},
            "--venue",
            "binance",
            "--rest-endpoint",
            venue.rest_url,
            key=None,
        )
        with rec:
            rec.start()

            def all_recorded() -> bool:
                streams = status(tmp_path / "data")["streams"]
                return len(streams) == 300 and all(s["records"] >= 3 for s in streams)

            rec.until(all_recorded, "300 depth streams recording")
            # Snapshots are asked once streams buffer; on a loaded machine the first may
            # still be in flight when every stream has its three records.
            rec.until(lambda: len(venue.snapshots) > 0, "the first snapshot served")
            assert rec.stop() == 0
    # One connection, subscribed in two paced commands, every stream in order.
    assert venue.connections == 1 and venue.rate_limited == 0
    assert [len(cmd["params"]) for _, cmd in venue.commands] == [200, 100]
    assert {s["symbol"] for s in status(tmp_path / "data")["streams"]} == set(symbols)
    assert [g for g in gaps(tmp_path / "data") if g["from_seq"] is not None] == []
    # 300 snapshots at subscribe weigh 15,000: a minute takes half of 6,000 (60 of 50 each),
    # and this run touches at most two clock minutes.
    assert 0 < len(venue.snapshots) <= 120


def test_a_quiet_feed_is_kept_alive_by_ping_frames(tmp_path: Path) -> None:
    venue = BinanceVenue()
    with running(venue), recorder(tmp_path, venue, "--stall-timeout", "3") as rec:
        rec.start()
        rec.until(lambda: subscribed(venue, 0), "the streams subscribed")
        venue.paused = True  # silence: only our pings and the venue's pongs go by
        start = venue.pings
        # A ping every second (a third of the stall timeout): 6 span two stall timeouts.
        rec.until(lambda: venue.pings >= start + 6, "six pings answered")
        assert venue.connections == 1, rec.log()[-2000:]
        assert rec.stop() == 0
