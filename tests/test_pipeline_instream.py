"""The pipeline on venues that resync in the feed: OKX's in-feed snapshots, keepalives and
resets, Coinbase's sequence per connection slot, Kraken's book checksums (journal records in,
rows, gaps and actions out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from fastfeed.derive.pipeline import Pipeline
from fastfeed.derive.streams import GapState, StreamKey
from fastfeed.journal import JournalRecord, RecordKind
from fastfeed.venues.bybit import BybitAdapter
from fastfeed.venues.coinbase import CoinbaseAdapter
from fastfeed.venues.kraken import KrakenAdapter
from fastfeed.venues.okx import OkxAdapter
from tests.fixture_venue.chains import KrakenFrames, Plan

FIXTURES = Path(__file__).parent / "fixtures"
RESUBSCRIBED = "not replayable: replaced by the snapshot of a resubscribe"


def fixture(venue: str, name: str) -> Any:
    return orjson.loads((FIXTURES / venue / f"{name}.json").read_bytes())


class Journal:
    """Records as the recorder journals them, numbered in order."""

    def __init__(self) -> None:
        self.records: list[JournalRecord] = []

    def frame(self, payload: bytes, slot: int = 1) -> None:
        self.add(RecordKind.INBOUND, payload, slot)

    def add(self, kind: RecordKind, payload: bytes, slot: int = 1) -> None:
        n = len(self.records) + 1
        self.records.append(JournalRecord(n, kind, slot, 0, 1000 * n, payload))


def okx_book(prev: int, seq: int, *, empty: bool = False) -> bytes:
    doc = fixture("okx", "books_snapshot" if prev == -1 else "books_update")
    data = doc["data"][0]
    data.update(prevSeqId=prev, seqId=seq)
    if empty:
        data.update(asks=[], bids=[])
    return orjson.dumps(doc)


def test_okx_snapshots_keepalives_and_resets() -> None:
    journal = Journal()
    for prev, seq, empty in [
        (-1, 1000, False),  # the subscribe's snapshot: a snapshots row, the baseline
        (1000, 1002, False),
        (1002, 1002, True),  # idle keepalive: no row
        (1002, 1005, False),
        (1008, 1010, False),  # 1006..1008 dropped
        (-1, 1010, False),  # the resubscribe's snapshot, at the last id: 1006..1008 lost
        (1010, 1011, False),
        (1011, 3, False),  # a sequence reset: epoch 1, no loss
        (3, 4, False),
    ]:
        journal.frame(okx_book(prev, seq, empty=empty))
    pipeline = Pipeline("okx", OkxAdapter())
    pipeline.feed_records(journal.records[:5])
    actions = pipeline.take_actions()
    key = StreamKey("books", "BTC-USDT")
    assert actions.gapped == {key}
    pipeline.feed_records(journal.records[5:])
    actions = pipeline.take_actions()
    assert actions.gapped == set() and len(actions.resets) == 1
    batch = pipeline.cut()
    assert batch is not None
    assert [(m.epoch, m.seq) for m in batch.messages] == [
        (0, 1002),
        (0, 1005),
        (0, 1010),
        (0, 1011),
        (1, 3),
        (1, 4),
    ]
    assert [(s.seq, s.lsn, s.url) for s in batch.snapshots] == [(1000, 1, ""), (1010, 6, "")]
    assert [(g.from_seq, g.to_seq, g.state, g.reason) for g in batch.gaps] == [
        (1006, 1008, GapState.LOST, RESUBSCRIBED)
    ]


def coinbase_frame(name: str, number: int, product: str = "BTC-USD") -> bytes:
    doc = fixture("coinbase", name)
    if name.startswith("level2"):
        doc["events"][0]["product_id"] = product
    return orjson.dumps({**doc, "sequence_num": number})


def test_coinbase_numbers_each_connection_and_a_jump_gaps_its_streams_only() -> None:
    journal = Journal()
    journal.frame(coinbase_frame("level2_snapshot", 0), slot=1)
    journal.frame(coinbase_frame("level2_snapshot", 0, "ETH-USD"), slot=2)
    journal.frame(coinbase_frame("level2_update", 1), slot=1)
    journal.frame(coinbase_frame("heartbeats_push", 1), slot=2)
    journal.frame(coinbase_frame("level2_update", 4), slot=1)  # 2..3 missing on slot 1
    journal.frame(coinbase_frame("level2_update", 4), slot=1)  # a duplicate: no row
    journal.frame(coinbase_frame("level2_update", 2, "ETH-USD"), slot=2)
    pipeline = Pipeline("coinbase", CoinbaseAdapter())
    pipeline.feed_records(journal.records)
    btc, eth = StreamKey("level2", "BTC-USD"), StreamKey("level2", "ETH-USD")
    assert pipeline.take_actions().gapped == {btc}
    # Slot 1 reconnects: it numbers anew (a new epoch), and the new snapshot ends the gap.
    journal.add(RecordKind.CONNECTION, b'{"event":"connected","slot":1}', slot=1)
    journal.frame(coinbase_frame("level2_snapshot", 0), slot=1)
    pipeline.feed_records(journal.records[-2:])
    batch = pipeline.cut()
    assert batch is not None
    rows = [(m.symbol, m.epoch, m.seq) for m in batch.messages]
    assert rows == [
        ("BTC-USD", 0, 0),
        ("ETH-USD", 0, 0),
        ("BTC-USD", 0, 1),
        ("BTC-USD", 0, 4),
        ("ETH-USD", 0, 2),
        ("BTC-USD", 1, 0),
    ]
    assert [(g.key, g.from_seq, g.to_seq, g.state, g.epoch, g.reason) for g in batch.gaps] == [
        (btc, 2, 3, GapState.LOST, 0, "reconnected: the new connection numbers its messages anew")
    ]
    assert eth not in pipeline.gapped_streams()


def test_kraken_a_drop_breaks_the_book_until_the_resubscribes_snapshot() -> None:
    frames = [u.frame for u in KrakenFrames().stream("BTC/USD", Plan(updates=4))]
    journal = Journal()
    for frame in [frames[0], frames[1], frames[3], frames[4], frames[0]]:  # update 2 dropped
        journal.frame(frame)
    pipeline = Pipeline("kraken", KrakenAdapter())
    pipeline.feed_records(journal.records[:3])
    key = StreamKey("book", "BTC/USD")
    assert pipeline.take_actions().gapped == {key}  # update 3's checksum fails
    assert pipeline.gapped_streams() == {key}
    pipeline.feed_records(journal.records[3:])
    batch = pipeline.cut()
    assert batch is not None and len(batch.messages) == 5
    [gap] = batch.gaps
    # From the last good message (update 1) to the snapshot that answered.
    assert (gap.from_seq, gap.from_ns, gap.to_ns, gap.state) == (None, 2000, 5000, GapState.LOST)
    assert pipeline.gapped_streams() == set()


def test_kraken_a_reader_learns_each_books_depth_from_the_journaled_subscribe() -> None:
    # Only the recorder's adapter built the subscribe: a reader of the journal (catch-up,
    # status, export) must still record book-25 pushes under book-25, checked at depth 25.
    journal = Journal()
    journal.add(RecordKind.OUTBOUND, KrakenAdapter().subscribe("book-25", ["BTC/USD"]))
    for update in KrakenFrames().stream("BTC/USD", Plan(updates=2)):
        journal.frame(update.frame)
    pipeline = Pipeline("kraken", KrakenAdapter())
    pipeline.feed_records(journal.records)
    batch = pipeline.cut()
    assert batch is not None and batch.gaps == []
    assert [(m.channel, m.symbol) for m in batch.messages] == [("book-25", "BTC/USD")] * 3


def test_coinbase_trades_get_a_lost_time_gap_across_a_disconnect() -> None:
    # Nothing re-sends market_trades after an outage: what the venue pushed meanwhile is lost.
    journal = Journal()
    journal.frame(coinbase_frame("level2_snapshot", 0))
    journal.frame(coinbase_frame("market_trades_push", 1))
    journal.add(RecordKind.CONNECTION, b'{"event":"disconnected","slot":1}')
    journal.add(RecordKind.CONNECTION, b'{"event":"connected","slot":1}')
    journal.frame(coinbase_frame("level2_snapshot", 0))
    journal.frame(coinbase_frame("market_trades_push", 1))
    pipeline = Pipeline("coinbase", CoinbaseAdapter())
    pipeline.feed_records(journal.records)
    batch = pipeline.cut()
    assert batch is not None
    trades = StreamKey("market_trades", "BTC-USD")
    assert [(g.key, g.from_ns, g.to_ns, g.state) for g in batch.gaps] == [
        (trades, 2000, 6000, GapState.LOST)  # from its last message to its next one
    ]


def test_coinbase_a_catch_up_from_a_checkpoint_mid_connection_derives_as_live() -> None:
    journal = Journal()
    journal.frame(coinbase_frame("level2_snapshot", 0))
    journal.frame(coinbase_frame("level2_update", 1))
    journal.frame(coinbase_frame("level2_update", 2))
    journal.frame(coinbase_frame("level2_update", 5))  # a jump after the checkpoint
    live = Pipeline("coinbase", CoinbaseAdapter())
    live.feed_records(journal.records)
    first = Pipeline("coinbase", CoinbaseAdapter())
    first.feed_records(journal.records[:2])
    checkpoint = first.cut()
    assert checkpoint is not None and checkpoint.counters is not None
    state = orjson.loads(orjson.dumps(checkpoint.tracker_state))  # as SQLite keeps it
    again = Pipeline("coinbase", CoinbaseAdapter())
    again.restore(state, checkpoint.counters, checkpoint.applied_lsn)
    again.feed_records(journal.records[2:])
    want, got = live.cut(), again.cut()
    assert want is not None and got is not None
    assert [(m.epoch, m.seq) for m in got.messages] == [(m.epoch, m.seq) for m in want.messages][2:]
    assert [(g.from_seq, g.to_seq, g.state, g.epoch) for g in got.gaps] == [
        (3, 4, GapState.OPEN, 0)
    ]
    assert got.tracker_state == want.tracker_state


def test_okx_a_keepalive_past_the_last_id_shows_the_lost_update() -> None:
    journal = Journal()
    for prev, seq, empty in [
        (-1, 1000, False),
        (1000, 1002, False),
        (1005, 1005, True),  # idle, but its id is past ours: 1003..1005 was never received
        (1005, 1007, False),  # continues the keepalive: no second gap
    ]:
        journal.frame(okx_book(prev, seq, empty=empty))
    pipeline = Pipeline("okx", OkxAdapter())
    pipeline.feed_records(journal.records[:3])
    key = StreamKey("books", "BTC-USDT")
    assert pipeline.take_actions().gapped == {key}  # at once, not at the next real update
    pipeline.feed_records(journal.records[3:])
    batch = pipeline.cut()
    assert batch is not None
    assert [(g.from_seq, g.to_seq, g.state) for g in batch.gaps] == [(1003, 1005, GapState.OPEN)]


def test_bybit_an_idle_level_1_after_a_venue_restart_is_one_reset() -> None:
    journal = Journal()
    snapshot = fixture("bybit", "orderbook_snapshot")
    for u in (500, 1, 1, 1):  # the restart's snapshot, then level 1's idle re-sends of it
        snapshot["data"]["u"] = u
        journal.frame(orjson.dumps(snapshot))
    pipeline = Pipeline("bybit", BybitAdapter())
    pipeline.feed_records(journal.records)
    assert pipeline.venue_resets == 1
    assert len(pipeline.take_actions().resets) == 1
    stats = pipeline.stream_stats(StreamKey("orderbook.1", "BTCUSDT"))
    assert stats is not None and stats.epoch == 1
