"""Each venue's loss detector against its fixture venue on loopback: faults exactly as injected.

Frames travel over a real WebSocket (the fixture venue of ``tests/fixture_venue/chains.py``),
are parsed by the venue's adapter and judged by its detector. Drops must be reported at exactly
the ids the dropped updates covered (Kraken: at the first update whose checksum fails);
reorders and duplicates, OKX and Bybit sequence resets and idle keepalives are never losses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.sync.client import ClientConnection, connect

from fastfeed.derive.continuity import BybitBooks, CoinbaseSequence, OkxBooks, Verdict, Verdicts
from fastfeed.derive.kraken_book import BookCheck, KrakenBooks
from fastfeed.venues.bybit import BybitAdapter
from fastfeed.venues.coinbase import CoinbaseAdapter
from fastfeed.venues.events import Message, Pong, Subscribed, VenueRejected
from fastfeed.venues.kraken import KrakenAdapter
from fastfeed.venues.okx import OkxAdapter
from tests.fixture_venue.chains import ChainVenue, Plan
from tests.fixture_venue.thread import running

TIMEOUT_S = 30.0
Adapter = OkxAdapter | BybitAdapter | CoinbaseAdapter | KrakenAdapter


@contextmanager
def session(name: str, plan: Plan) -> Iterator[tuple[ChainVenue, ClientConnection]]:
    venue = ChainVenue(name, plan)
    with running(venue), connect(venue.url, open_timeout=TIMEOUT_S) as ws:
        yield venue, ws


def exchange(venue: ChainVenue, ws: ClientConnection, commands: list[bytes]) -> list[bytes]:
    """Send the commands, wait until the venue answered each, read everything it served."""
    for cmd in commands:
        ws.send(cmd.decode())
        assert venue.answered.acquire(timeout=TIMEOUT_S)
    frames = []
    while len(frames) < len(venue.served):
        got = ws.recv(TIMEOUT_S)
        frames.append(got.encode() if isinstance(got, str) else got)
    assert frames == venue.served
    return frames


def opened(verdicts: list[Verdicts]) -> list[tuple[int, int]]:
    """The holes the gaps opened, in order (a reorder opens one that a late message fills)."""
    return [r for v in verdicts if v.verdict is Verdict.GAP for r in v.opened]


FAULTS = Plan(updates=12, drop={3, 7, 8}, duplicate={5}, reorder={10})


# -- OKX ------------------------------------------------------------------------------------------
def okx_verdicts(plan: Plan, books: OkxBooks | None = None) -> tuple[ChainVenue, list[Verdicts]]:
    adapter, books = OkxAdapter(), books or OkxBooks()
    with session("okx", plan) as (venue, ws):
        frames = exchange(venue, ws, [adapter.subscribe("books", ["BTC-USDT"])])
    out = []
    for raw in frames:
        event = adapter.parse(raw, 0)
        if type(event) is Message:
            verdict = books.observe(event)
            assert verdict is not None
            out.append(verdict)
    return venue, out


def test_okx_drops_are_found_at_their_ids() -> None:
    books = OkxBooks()
    venue, verdicts = okx_verdicts(FAULTS, books)
    # 7 and 8 dropped together: one hole covering both; update 10 came after 11 and filled its.
    (a, b), (c, _), (_, f) = venue.expected_loss("BTC-USDT")
    assert books.chain.holes("BTC-USDT") == ((a, b), (c, f))
    late = next(u.ids for u in venue.planned["BTC-USDT"] if u.index == 10)
    assert opened(verdicts) == [(a, b), (c, f), late]
    kinds = [v.verdict for v in verdicts]
    assert kinds.count(Verdict.DUPLICATE) == 1 and kinds.count(Verdict.LATE) == 1
    # The recovery's snapshot (a resubscribe) closes both holes as one loss up to it.
    assert books.check("BTC-USDT", -1, f + 100, False) == Verdicts(
        Verdict.SNAPSHOT, ((a, f + 100),)
    )


def test_okx_keepalives_and_resets_are_not_losses() -> None:
    _, verdicts = okx_verdicts(Plan(updates=8, keepalive={2, 6}, reset={4}))
    kinds = [v.verdict for v in verdicts]
    assert kinds.count(Verdict.KEEPALIVE) == 2 and kinds.count(Verdict.RESET) == 1
    assert all(not v.lost for v in verdicts)
    assert set(kinds) == {Verdict.SNAPSHOT, Verdict.IN_ORDER, Verdict.KEEPALIVE, Verdict.RESET}


def test_okx_ping_and_errors() -> None:
    adapter = OkxAdapter()
    with session("okx", Plan(error=True)) as (venue, ws):
        (raw,) = exchange(venue, ws, [adapter.subscribe("books", ["NOPE"])])
        ws.send(adapter.ping().decode())
        assert adapter.parse(ws.recv(TIMEOUT_S).encode(), 0) == Pong()
    event = adapter.parse(raw, 0)
    assert type(event) is VenueRejected and (event.code, event.fatal) == (60018, True)


# -- Bybit ----------------------------------------------------------------------------------------
def bybit_verdicts(
    plan: Plan, books: BybitBooks | None = None
) -> tuple[ChainVenue, list[Verdicts]]:
    adapter, books = BybitAdapter(), books or BybitBooks()
    with session("bybit", plan) as (venue, ws):
        frames = exchange(venue, ws, [adapter.subscribe("orderbook.1", ["BTCUSDT"])])
    events = [adapter.parse(raw, 0) for raw in frames]
    assert events[0] == Subscribed("orderbook.1", ("BTCUSDT",), None)
    out = []
    for event in events[1:]:
        assert type(event) is Message
        verdict = books.observe(event)
        assert verdict is not None
        out.append(verdict)
    return venue, out


def test_bybit_drops_are_found_at_their_ids() -> None:
    books = BybitBooks()
    venue, verdicts = bybit_verdicts(FAULTS, books)
    (a, _), (c, _), (_, f) = venue.expected_loss("BTCUSDT")
    assert books.chain.holes("orderbook.1.BTCUSDT") == ((a, a), (c, f))
    assert opened(verdicts) == [(a, a), (c, f), (f + 2, f + 2)]  # the reordered 10 filled its


def test_bybit_restart_is_not_a_loss() -> None:
    _, verdicts = bybit_verdicts(Plan(updates=6, reset={3}))
    assert [v.verdict for v in verdicts] == [
        Verdict.SNAPSHOT,
        Verdict.IN_ORDER,
        Verdict.IN_ORDER,
        Verdict.RESET,
        Verdict.IN_ORDER,
        Verdict.IN_ORDER,
        Verdict.IN_ORDER,
    ]
    assert all(not v.lost for v in verdicts)


def test_bybit_refusal_stops() -> None:
    adapter = BybitAdapter()
    with session("bybit", Plan(error=True)) as (venue, ws):
        (raw,) = exchange(venue, ws, [adapter.subscribe("orderbook.1", ["NOPE"])])
    event = adapter.parse(raw, 0)
    assert type(event) is VenueRejected and event.fatal
    assert event.message == "Invalid topic: orderbook.1.NOPE"


# -- Coinbase -------------------------------------------------------------------------------------
def coinbase_verdicts(
    plan: Plan, seq: CoinbaseSequence | None = None
) -> tuple[ChainVenue, list[Verdicts]]:
    adapter, seq = CoinbaseAdapter(), seq or CoinbaseSequence()
    with session("coinbase", plan) as (venue, ws):
        commands = [*adapter.opening_commands(), adapter.subscribe("level2", ["BTC-USD"])]
        frames = exchange(venue, ws, commands)
    out = []
    for raw in frames:
        adapter.parse(raw, 0)
        assert adapter.sequence_num is not None  # every frame, acks and heartbeats too
        out.append(seq.check(adapter.sequence_num))
    return venue, out


def test_coinbase_drops_are_found_at_their_numbers() -> None:
    seq = CoinbaseSequence()
    plan = Plan(updates=12, drop={3, 7, 8}, duplicate={5}, reorder={10}, keepalive={4, 9})
    venue, verdicts = coinbase_verdicts(plan, seq)
    (a, _), (c, _), (_, f) = venue.expected_loss("BTC-USD")
    late = next(u.ids for u in venue.planned["BTC-USD"] if u.index == 10)
    assert opened(verdicts) == [(a, a), (c, f), late]
    assert seq.settle() == ((a, a), (c, f))  # what the level2 resubscribe gives up
    kinds = [v.verdict for v in verdicts]
    assert kinds.count(Verdict.DUPLICATE) == 1 and kinds.count(Verdict.LATE) == 1


# -- Kraken ---------------------------------------------------------------------------------------
def kraken_results(plan: Plan) -> list[BookCheck]:
    adapter = KrakenAdapter()
    books = KrakenBooks(adapter.depth_of)
    with session("kraken", plan) as (venue, ws):
        frames = exchange(venue, ws, [adapter.subscribe("book", ["ALGO/USD"])])
    out = []
    for raw in frames:
        event = adapter.parse(raw, 0)
        if type(event) is Message:
            (result,) = books.apply(raw)
            out.append(result.check)
    return out


def test_kraken_every_served_checksum_passes() -> None:
    assert kraken_results(Plan(updates=12)) == [BookCheck.OK] * 13


@pytest.mark.parametrize("dropped", [1, 5, 12])
def test_kraken_drop_fails_at_the_next_update(dropped: int) -> None:
    checks = kraken_results(Plan(updates=12, drop={dropped}))
    if dropped == 12:
        assert checks == [BookCheck.OK] * 12  # nothing after it: nothing can tell yet
        return
    # The first update after the dropped one is the first mismatch; the rest wait.
    assert checks.index(BookCheck.MISMATCH) == dropped
    assert checks[:dropped] == [BookCheck.OK] * dropped
    assert set(checks[dropped + 1 :]) <= {BookCheck.UNSYNCED}


def test_kraken_refusal() -> None:
    adapter = KrakenAdapter()
    with session("kraken", Plan(error=True)) as (venue, ws):
        (raw,) = exchange(venue, ws, [adapter.subscribe("book", ["NOPE/USD"])])
    event = adapter.parse(raw, 0)
    assert event == VenueRejected(
        "subscribe", -1, "Currency pair not supported NOPE/USD", "book", ("NOPE/USD",), True
    )


def test_a_venue_that_never_acknowledges_sends_nothing() -> None:
    """The recorder's ack timeout has something to time out on: no frame ever comes."""
    adapter = OkxAdapter()
    with session("okx", Plan(never_ack=True)) as (venue, ws):
        assert exchange(venue, ws, [adapter.subscribe("books", ["BTC-USDT"])]) == []
        ws.send(adapter.ping().decode())  # the connection itself is alive
        assert ws.recv(TIMEOUT_S) == "pong"
