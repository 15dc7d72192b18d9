"""Splitting a subscription set across connections (Binance: 1024 streams each); a rotating
connection proven from what the applier derived."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import orjson
import pytest

from fastfeed.derive.pipeline import Pipeline
from fastfeed.derive.streams import StreamKey
from fastfeed.journal import FLAG_SHADOW, RecordKind
from fastfeed.recorder._sink import FrameSink
from fastfeed.recorder.config import parse_channel_specs
from fastfeed.recorder.connection import Connection
from fastfeed.recorder.shards import ShardedFeed, _Link, _Pacer, split_streams
from fastfeed.venues.binance import BinanceAdapter
from fastfeed.venues.coinbase import CoinbaseAdapter

FIXTURES = Path(__file__).parent / "fixtures" / "binance"


def test_split_keeps_order_and_fills_each_connection() -> None:
    subs = {"depth": [f"S{i}" for i in range(700)], "aggTrade": [f"S{i}" for i in range(400)]}
    shards = split_streams(subs, 1024)
    assert [sum(len(v) for v in s.values()) for s in shards] == [1024, 76]
    assert shards[0]["depth"] == subs["depth"]
    assert shards[0]["aggTrade"] + shards[1]["aggTrade"] == subs["aggTrade"]


def test_three_hundred_symbols_on_three_channels_fit_one_connection() -> None:
    symbols = ",".join(f"sym{i}usdt" for i in range(300))
    specs = [f"depth:{symbols}", f"aggTrade:{symbols}", f"bookTicker:{symbols}"]
    subs = parse_channel_specs(specs, "binance")
    assert subs["depth"][:2] == ["SYM0USDT", "SYM1USDT"] and len(subs["bookTicker"]) == 300
    assert len(split_streams(subs, 1024)) == 1
    more = parse_channel_specs([*specs, f"trade:{symbols}"], "binance")
    assert len(split_streams(more, 1024)) == 2


class Owner:
    """The recorder's side of the feed: numbers what is journaled, says which streams gapped."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, int]] = []  # (kind, flags, slot)
        self.payloads: list[bytes] = []
        self.gapped: set[StreamKey] = set()
        self.wakes = 0

    def journal_record(self, kind: RecordKind, payload: bytes, flags: int, slot: int) -> int:
        self.records.append((kind, flags, slot))
        self.payloads.append(payload)
        return len(self.records)

    def wake_applier(self) -> None:
        self.wakes += 1

    def listener(self, connection: Connection, slot: int) -> FrameSink:
        raise AssertionError("not connected in this test")

    def release(self, slot: int) -> None:
        pass

    def gapped_streams(self) -> set[StreamKey]:
        return set(self.gapped)

    def last_seq(self, key: StreamKey) -> int | None:
        return None


def test_a_rotating_link_is_proven_by_what_the_applier_derived() -> None:
    depth = (FIXTURES / "depth_push.json").read_bytes().strip()
    book = (FIXTURES / "bookTicker_push.json").read_bytes().strip()
    key = StreamKey("depth", "NKNUSDT")
    owner = Owner()
    subs = {"depth": ["NKNUSDT"], "bookTicker": ["NKNUSDT"]}
    feed = ShardedFeed(BinanceAdapter(), "ws://127.0.0.1:1", "http://127.0.0.1:1", subs, owner)
    link = _Link(feed, 2, subs, rotation=True)
    feed._links.append(link)
    link.proving = {key}  # what on_connected sets for a rotation's first connect
    link.on_frame(depth, False)
    link.on_frame(book, False)
    # Journaled under the link's slot; the id-less push is the old link's to derive.
    assert owner.records == [(RecordKind.INBOUND, 0, 2), (RecordKind.INBOUND, FLAG_SHADOW, 2)]
    assert owner.wakes == 1  # the depth push is awaited: derive it soon
    feed.on_derived(set(), 0)  # the applier has not reached LSN 1 yet
    assert link.proving == {key} and not link.proven.is_set()
    owner.gapped = {key}
    feed.on_derived({key}, 2)  # derived, but the stream has a gap: not a continuation
    assert link.proving == {key} and link.awaiting == {}
    link.on_frame(depth, False)
    owner.gapped = set()
    feed.on_derived(set(), 3)
    assert link.proving is None and link.proven.is_set()
    link.on_frame(book, False)  # proven: its own frames are derived now
    assert owner.records[-1] == (RecordKind.INBOUND, 0, 2)


def test_a_frame_over_the_limit_on_a_link_is_journaled_and_counted_without_a_loss() -> None:
    owner = Owner()
    subs = {"depth": ["NKNUSDT"]}
    feed = ShardedFeed(BinanceAdapter(), "ws://127.0.0.1:1", "http://127.0.0.1:1", subs, owner)
    link = _Link(feed, 3, subs, rotation=False)
    link.on_oversized(17_000_000)
    assert owner.records == [(RecordKind.GAP, 0, 3)]
    assert owner.payloads == [b'{"event":"oversized","size":17000000}']
    # No stream named: counted, and the ids it held are the next push's gap (a snapshot's).
    pipeline = Pipeline("binance", BinanceAdapter())
    pipeline.feed(1, RecordKind.GAP, 10, owner.payloads[0])
    batch = pipeline.cut()
    assert batch is not None and batch.counters is not None
    assert batch.counters["oversized"] == 1 and batch.gaps == []


def test_the_pacer_keeps_the_rate_and_the_hourly_budget() -> None:
    pacer = _Pacer(per_s=3, per_hour=2)  # one every 0.5 s, two an hour
    assert pacer.wait_s(100.0) == 0
    pacer.sent(100.0)
    assert pacer.wait_s(100.1) == pytest.approx(0.4)
    pacer.sent(100.5)
    assert pacer.wait_s(101.0) == pytest.approx(3599.0)  # until the first ages out
    assert pacer.wait_s(3700.0) == 0
    assert _Pacer(per_s=3, per_hour=None).wait_s(0.0) == 0


class _Sent:
    """A connection that keeps what is sent; ``done`` once ``want`` commands went."""

    def __init__(self, want: int) -> None:
        self.payloads: list[bytes] = []
        self.want = want
        self.done = asyncio.Event()

    def send(self, payload: bytes) -> bool:
        self.payloads.append(payload)
        if len(self.payloads) == self.want:
            self.done.set()
        return True


def test_resubscribes_are_paced_and_batched_per_channel() -> None:
    # A Coinbase seq jump gaps every level2 stream of the connection at once: one unsubscribe
    # and one subscribe for all of them, through the pacer, not two commands per stream.
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
    owner = Owner()
    feed = ShardedFeed(CoinbaseAdapter(), "ws://127.0.0.1:1", None, {"level2": symbols}, owner)
    link = _Link(feed, 1, {"level2": symbols}, rotation=False)

    async def run() -> list[bytes]:
        sent = _Sent(want=2)
        for symbol in symbols:
            link.resubscribe(StreamKey("level2", symbol))
        link.resubscribe(StreamKey("level2", "BTC-USD"))  # asked again: still once
        pacer = asyncio.create_task(link._send_paced(cast(Connection, sent), []))
        await asyncio.wait_for(sent.done.wait(), 10)
        pacer.cancel()
        await asyncio.gather(pacer, return_exceptions=True)
        return sent.payloads

    payloads = asyncio.run(run())
    sent = [orjson.loads(p) for p in payloads]
    assert [(c["type"], c["product_ids"]) for c in sent] == [
        ("unsubscribe", symbols),
        ("subscribe", symbols),
    ]
    assert owner.payloads == payloads  # journaled as sent
