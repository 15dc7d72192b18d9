"""Each venue's loss detector against its fixture venue on loopback: faults exactly as injected.

Frames travel over a real WebSocket (the fixture venue of ``tests/fixture_venue/chains.py``),
are parsed by the venue's adapter and judged as the recorder judges them (OKX, Bybit: the
pipeline; Coinbase: its connection sequence; Kraken: the book checker). Drops must be reported
at exactly the ids the dropped updates covered (Kraken: at the first update whose checksum fails);
reorders and duplicates, OKX and Bybit sequence resets and idle keepalives are never losses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.sync.client import ClientConnection, connect

from fastfeed.derive.continuity import CoinbaseSequence, Verdict, Verdicts
from fastfeed.derive.kraken_book import BookCheck, KrakenBooks
from fastfeed.derive.pipeline import Pipeline
from fastfeed.derive.streams import GapState, StreamKey
from fastfeed.journal import RecordKind
from fastfeed.venues.bybit import BybitAdapter
from fastfeed.venues.coinbase import CoinbaseAdapter
from fastfeed.venues.events import Message, Pong, VenueRejected
from fastfeed.venues.kraken import KrakenAdapter
from fastfeed.venues.okx import OkxAdapter
from tests.fixture_venue.chains import ChainVenue, Plan
from tests.fixture_venue.thread import running

TIMEOUT_S = 30.0
OPEN = GapState.OPEN
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
def derived(name: str, plan: Plan, commands: list[bytes]) -> tuple[ChainVenue, Pipeline]:
    """The frames served, derived as the recorder does (the adapter's ``step`` and the
    sequence tracker), the commands journaled before them."""
    adapter = OkxAdapter() if name == "okx" else BybitAdapter()
    with session(name, plan) as (venue, ws):
        frames = exchange(venue, ws, commands)
    pipeline = Pipeline(name, adapter)
    for lsn, raw in enumerate(frames, 1):
        pipeline.feed(lsn, RecordKind.INBOUND, lsn, raw)
    return venue, pipeline


def holes(pipeline: Pipeline) -> list[tuple[int | None, int | None, GapState]]:
    batch = pipeline.cut()
    assert batch is not None
    return sorted((g.from_seq, g.to_seq, g.state) for g in batch.gaps)


def test_okx_drops_are_found_at_their_ids() -> None:
    subscribe = OkxAdapter().subscribe("books", ["BTC-USDT"])
    venue, pipeline = derived("okx", FAULTS, [subscribe])
    # 7 and 8 dropped together: one hole covering both; update 10 came after 11 and filled its.
    (a, b), (c, _), (_, f) = venue.expected_loss("BTC-USDT")
    late = next(u.ids for u in venue.planned["BTC-USDT"] if u.index == 10)
    assert late is not None
    assert holes(pipeline) == sorted([(a, b, OPEN), (c, f, OPEN), (*late, GapState.FILLED)])
    stats = pipeline.stream_stats(StreamKey("books", "BTC-USDT"))
    assert stats is not None and stats.duplicates == 1


def test_okx_keepalives_and_resets_are_not_losses() -> None:
    plan = Plan(updates=8, keepalive={2, 6}, reset={4})
    _, pipeline = derived("okx", plan, [OkxAdapter().subscribe("books", ["BTC-USDT"])])
    assert holes(pipeline) == [] and pipeline.venue_resets == 1


def test_okx_ping_and_errors() -> None:
    adapter = OkxAdapter()
    with session("okx", Plan(error=True)) as (venue, ws):
        (raw,) = exchange(venue, ws, [adapter.subscribe("books", ["NOPE"])])
        ws.send(adapter.ping().decode())
        assert adapter.parse(ws.recv(TIMEOUT_S).encode(), 0) == Pong()
    event = adapter.parse(raw, 0)
    assert type(event) is VenueRejected and (event.code, event.fatal) == (60018, True)


# -- Bybit ----------------------------------------------------------------------------------------
def test_bybit_drops_are_found_at_their_ids() -> None:
    subscribe = BybitAdapter().subscribe("orderbook.1", ["BTCUSDT"])
    venue, pipeline = derived("bybit", FAULTS, [subscribe])
    (a, _), (c, _), (_, f) = venue.expected_loss("BTCUSDT")
    # The reordered 10 filled its own.
    assert holes(pipeline) == [(a, a, OPEN), (c, f, OPEN), (f + 2, f + 2, GapState.FILLED)]


def test_bybit_restart_is_not_a_loss() -> None:
    subscribe = BybitAdapter().subscribe("orderbook.1", ["BTCUSDT"])
    _, pipeline = derived("bybit", Plan(updates=6, reset={3}), [subscribe])
    assert holes(pipeline) == [] and pipeline.venue_resets == 1
    stats = pipeline.stream_stats(StreamKey("orderbook.1", "BTCUSDT"))
    assert stats is not None and stats.epoch == 1


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
