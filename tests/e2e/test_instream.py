"""Venues that resync in the feed (OKX, Bybit, Coinbase) end to end: `fastfeed run --venue V`
against the fixture venue of tests/fixture_venue/chains.py on loopback, in a subprocess.

The venue serves each subscription its book snapshot and a run of numbered updates at once,
with faults on a symbol's first subscription; the recorder must journal every frame, find each
drop at exactly its ids, resubscribe the stream (the venue's snapshot closes the hole as lost)
and call reorders, duplicates, resets and idle keepalives no loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fastfeed.venues import adapter_for
from fastfeed.venues.events import Message
from fastfeed.venues.instream import InStreamVenue, Step
from tests.fixture_venue.chains import ChainVenue, Plan
from tests.fixture_venue.thread import running

from .harness import Recorder, cli, export, gaps, status


@dataclass(frozen=True)
class Spec:
    """One venue as the tests drive it: its book and trade channels and two symbols."""

    venue: str  # --venue, and the fixture venue's protocol
    book: str  # the book channel, as recorded
    symbols: tuple[str, str]
    trade: str  # the trade channel (subscribed for the first symbol: the venue sends none)

    def channels(self) -> dict[str, list[str]]:
        return {self.book: list(self.symbols), self.trade: [self.symbols[0]]}

    def adapter(self) -> InStreamVenue:
        adapter = adapter_for(self.venue)
        assert isinstance(adapter, InStreamVenue)
        return adapter


SPECS = {
    "okx": Spec("okx", "books", ("BTC-USDT", "ETH-USDT"), "trades"),
    "bybit": Spec("bybit", "orderbook.1", ("BTCUSDT", "ETHUSDT"), "publicTrade"),
    "bybit-linear": Spec("bybit-linear", "orderbook.1", ("BTCUSDT", "ETHUSDT"), "publicTrade"),
    "coinbase": Spec("coinbase", "level2", ("BTC-USD", "ETH-USD"), "market_trades"),
    "kraken": Spec("kraken", "book", ("ALGO/USD", "BTC/USD"), "trade"),
}


@pytest.fixture(params=["bybit", "coinbase", "kraken", "okx"])  # bybit-linear: the drop test
def spec(request: pytest.FixtureRequest) -> Spec:
    return SPECS[request.param]


@contextmanager
def recording(tmp_path: Path, spec: Spec, plan: Plan) -> Iterator[tuple[ChainVenue, Recorder]]:
    venue = ChainVenue(spec.venue.partition("-")[0], plan)  # bybit-linear speaks bybit
    with (
        running(venue),
        Recorder(
            tmp_path, tmp_path / "data", venue.url, spec.channels(), "--venue", spec.venue, key=None
        ) as rec,
    ):
        yield venue, rec


def _unsubscribed(cmd: dict[str, Any]) -> list[str]:
    """The symbols one command unsubscribes: OKX args {"channel", "instId"}, Bybit args
    "topic.SYMBOL", Coinbase product_ids, Kraken params.symbol."""
    if cmd.get("type") == "unsubscribe":
        return list(cmd["product_ids"])
    if cmd.get("method") == "unsubscribe":
        return list(cmd["params"]["symbol"])
    if cmd.get("op") != "unsubscribe":
        return []
    return [a["instId"] if isinstance(a, dict) else a.rpartition(".")[2] for a in cmd["args"]]


def resubscribed(venue: ChainVenue) -> list[str]:
    """The symbols unsubscribed (the first half of a recovery), in order."""
    return [symbol for cmd in venue.commands for symbol in _unsubscribed(cmd)]


def served_messages(spec: Spec, venue: ChainVenue) -> list[tuple[bytes, Message, Step]]:
    """Every push served, in order, with what it does to its chain."""
    adapter = spec.adapter()
    out = []
    for frame in list(venue.served):
        event = adapter.parse(frame, 0)
        if type(event) is Message:
            out.append((frame, event, adapter.step(event)))
    return out


def data_frames(spec: Spec, venue: ChainVenue) -> set[bytes]:
    """Every push served (a duplicate once), idle keepalives left out: what export must hold."""
    return {f for f, _, step in served_messages(spec, venue) if step is not Step.KEEPALIVE}


def caught_up(tmp_path: Path, spec: Spec, frames: set[bytes]) -> bool:
    """Every frame of ``frames`` is exported, and no gap is waiting for recovery."""
    doc = status(tmp_path / "data")
    return bool(doc["streams"]) and doc["gaps_open"] == 0 and frames <= exported(tmp_path)[0]


def drain(rec: Recorder, tmp_path: Path, spec: Spec, frames: set[bytes]) -> None:
    rec.until(lambda: caught_up(tmp_path, spec, frames), "every frame served derived, no gap")
    assert rec.stop() == 0


def exported(tmp_path: Path) -> tuple[set[bytes], list[dict[str, Any]]]:
    """Frames exported (messages and snapshots), and the message rows."""
    frames: set[bytes] = set()
    messages = []
    for rows in export(tmp_path / "data").values():
        for row in rows:
            frames.add(row["frame"].encode())
            if row["kind"] == "message":
                messages.append(row)
    return frames, messages


def verified(tmp_path: Path) -> None:
    proc = cli("verify", "--data-dir", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent id ranges joined: updates dropped together leave one hole."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo == out[-1][1] + 1:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


@pytest.mark.parametrize("name", ["bybit", "bybit-linear", "coinbase", "okx"])  # Kraken: below
def test_drops_are_lost_at_exactly_their_ids_and_export_is_every_frame(
    tmp_path: Path, name: str
) -> None:
    spec = SPECS[name]
    plan = Plan(updates=12, drop={3, 7, 8}, duplicate={5}, reorder={10}, keepalive={4, 9})
    with recording(tmp_path, spec, plan) as (venue, rec):
        rec.start()
        drain(rec, tmp_path, spec, data_frames(spec, venue))
    frames, _ = exported(tmp_path)
    assert frames == data_frames(spec, venue)
    ledger = gaps(tmp_path / "data")
    first, second = spec.symbols  # served in this order
    expected = {first: venue.expected_loss(first), second: venue.expected_loss(second)}
    if spec.adapter().numbers_connections:
        # A connection-wide number does not say whose push was lost: the first symbol, on the
        # connection since before the second's drops, may have lost pushes there too.
        expected[first] = expected[first] + expected[second]
    for symbol in spec.symbols:
        lost = [
            (g["from_seq"], g["to_seq"])
            for g in ledger
            if g["symbol"] == symbol and g["state"] == "lost"
        ]
        assert merged(lost) == merged(expected[symbol]), symbol
    # The reorder filled its own gap; nothing else is left.
    assert all(g["state"] in ("lost", "filled") for g in ledger)
    # Recovery was a resubscribe of each gapped book, answered with a fresh snapshot.
    assert sorted(resubscribed(venue)) == list(spec.symbols)
    verified(tmp_path)


@pytest.mark.parametrize("name", ["bybit", "okx"])  # Coinbase numbers connections instead
def test_a_sequence_reset_is_a_new_epoch_not_a_loss(tmp_path: Path, name: str) -> None:
    spec = SPECS[name]
    with recording(tmp_path, spec, Plan(updates=8, reset={4}, keepalive={6})) as (venue, rec):
        rec.start()
        drain(rec, tmp_path, spec, data_frames(spec, venue))
    assert gaps(tmp_path / "data") == []
    frames, messages = exported(tmp_path)
    assert frames == data_frames(spec, venue)
    assert {m["epoch"] for m in messages} == {0, 1}
    assert resubscribed(venue) == []
    assert "the venue numbers it anew from" in rec.log()
    verified(tmp_path)


def test_kill9_and_restart_lose_nothing(tmp_path: Path, spec: Spec) -> None:
    with recording(tmp_path, spec, Plan(updates=10)) as (venue, rec):
        rec.start()
        # Killed as soon as the venue has sent everything: the recorder may not have read it.
        rec.until(lambda: len(venue.served) >= 2 * 11, "the first run's frames served")
        rec.kill()
        first_run = data_frames(spec, venue)
        rec.start()
        rec.until(lambda: len(venue.served) >= 4 * 11, "the second run's frames served")
        drain(rec, tmp_path, spec, data_frames(spec, venue) - first_run)
    frames, messages = exported(tmp_path)
    # What the killed run had read is kept; the restart's snapshots make up the rest.
    assert data_frames(spec, venue) - first_run <= frames <= data_frames(spec, venue)
    seqs = [(m["symbol"], m["epoch"], m["seq"]) for m in messages if m["seq"] is not None]
    assert len(seqs) == len(set(seqs)), "an update recorded twice"
    assert gaps(tmp_path / "data") == []
    assert resubscribed(venue) == []
    verified(tmp_path)


def test_a_refused_subscription_stops_with_the_venues_reason(tmp_path: Path) -> None:
    # One venue: the shell's path is the same for all, and which refusals each adapter calls
    # final is tested against every fixture venue in tests/venues/test_chain_venues.py.
    with recording(tmp_path, SPECS["okx"], Plan(error=True)) as (_, rec):
        rec.start()
        code = rec.wait()
    assert code != 0
    assert "Wrong URL or channel doesn't exist" in rec.log()  # OKX's message, code 60018
    assert "Traceback" not in rec.log()


@pytest.mark.parametrize("name", ["okx", "bybit", "bybit-linear", "coinbase", "kraken"])
def test_the_venue_is_offered_on_the_command_line(name: str) -> None:
    proc = cli("run", "--venue", name, "--channels", "nope:BTC", "--data-dir", "/nonexistent")
    assert proc.returncode == 2
    assert "unknown channel 'nope'" in proc.stderr


def test_kraken_finds_a_drop_at_the_first_checksum_that_fails(tmp_path: Path) -> None:
    spec = SPECS["kraken"]
    with recording(tmp_path, spec, Plan(updates=8, drop={3}, duplicate={5})) as (venue, rec):
        rec.start()
        drain(rec, tmp_path, spec, data_frames(spec, venue))
    frames, messages = exported(tmp_path)
    assert frames == data_frames(spec, venue)
    ledger = gaps(tmp_path / "data")
    for symbol in spec.symbols:
        planned = {u.index: u.frame for u in venue.planned[symbol]}
        # The resubscribe is served the same bytes again: (first, last) receive time of each.
        seen: dict[bytes, tuple[int, int]] = {}
        for m in messages:
            if m["symbol"] == symbol:
                frame = m["frame"].encode()
                seen[frame] = (seen.get(frame, (m["recv_ns"], 0))[0], m["recv_ns"])
        # Update 4 fails its checksum: lost from update 2, the last good one, to the snapshot
        # the resubscribe brought.
        [gap] = [g for g in ledger if g["symbol"] == symbol]
        assert (gap["state"], gap["from_seq"], gap["to_seq"]) == ("lost", None, None)
        assert gap["from_ns"] == seen[planned[2]][0]
        assert gap["to_ns"] == seen[planned[0]][1]
        assert gap["reason"] == "not replayable: replaced by the snapshot of a resubscribe"
    assert sorted(resubscribed(venue)) == list(spec.symbols)
    verified(tmp_path)
