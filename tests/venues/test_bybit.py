"""Bybit adapter: exact events from real frames, the u rules, replies and commands."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fastfeed.venues.bybit import BybitAdapter, Category
from fastfeed.venues.events import Malformed, Message, Pong, Subscribed, VenueRejected
from fastfeed.venues.instream import Step

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bybit"


def frame(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().strip()


def test_orderbook_snapshot_and_delta() -> None:
    bybit = BybitAdapter()
    snap, delta = frame("orderbook_snapshot"), frame("orderbook_delta")
    assert bybit.parse(snap, 0) == Message(
        "orderbook.1", "BTCUSDT", 123456789, 1709891679000, orjson.loads(snap)
    )
    assert bybit.parse(delta, 0) == Message(
        "orderbook.1", "BTCUSDT", 123456790, 1709891679500, orjson.loads(delta)
    )
    raw = frame("orderbook_snapshot_50")
    assert BybitAdapter(Category.LINEAR).parse(raw, 0) == Message(
        "orderbook.50", "BTCUSDT", 13079592, 1671179923028, orjson.loads(raw)
    )


def test_public_trade_has_no_seq() -> None:
    raw = frame("publicTrade_push")
    assert BybitAdapter().parse(raw, 0) == Message(
        "publicTrade", "BTCUSDT", None, 1672304486868, orjson.loads(raw)
    )


def test_replies() -> None:
    bybit = BybitAdapter()
    assert bybit.subscribe("orderbook.50", ["btcusdt"]) == (
        b'{"op":"subscribe","args":["orderbook.50.BTCUSDT"],"req_id":"1"}'
    )
    assert bybit.parse(frame("subscribe_ack"), 0) == Subscribed("orderbook.50", ("BTCUSDT",), None)
    assert bybit.parse(frame("subscribe_failure"), 0) == VenueRejected(
        "subscribe", -1, "Invalid topic: invalid.topic.BTCUSDT", None, (), True
    )
    assert type(bybit.parse(frame("pong_spot"), 0)) is Pong
    linear_pong = b'{"req_id":"","op":"pong","args":["1672916271846"],"conn_id":"x"}'
    assert type(bybit.parse(linear_pong, 0)) is Pong


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b'"u":123456790', b'"u":0', "expected positive int64 at $.data.u"),
        (b'"s":"BTCUSDT"', b'"s":"ETHUSDT"', "expected 'BTCUSDT' at $.data.s"),
        (b'"type":"delta"', b'"type":"diff"', "expected 'snapshot' or 'delta' at $.type"),
        (b"orderbook.1.", b"orderbook.7.", "unknown topic"),
        (b'["27450.00","0.400"]', b'["27450.00",0.4]', "expected [price, size] strings"),
    ],
)
def test_malformed(old: bytes, new: bytes, reason: str) -> None:
    raw = frame("orderbook_delta").replace(old, new, 1)
    event = BybitAdapter().parse(raw, 0)
    assert type(event) is Malformed and event.reason.startswith(reason), event


def test_names_and_urls() -> None:
    spot, linear = BybitAdapter(), BybitAdapter(Category.LINEAR)
    assert spot.channel("depth") == "orderbook.50" and spot.channel("trade") == "publicTrade"
    assert spot.channel("orderbook.200") == "orderbook.200" and spot.channel("orderbook.7") is None
    assert spot.url("", None) == "wss://stream.bybit.com/v5/public/spot"
    assert linear.url("ws://127.0.0.1:8", None) == "ws://127.0.0.1:8/v5/public/linear"
    assert spot.ping() == b'{"op":"ping"}'


def test_step_rules() -> None:
    """Bybit "Orderbook": a snapshot replaces the book (u == 1 after a restart too: the tracker
    sees the id go back and starts a new epoch once), a delta continues the chain."""
    spot = BybitAdapter()
    snapshot = orjson.loads(frame("orderbook_snapshot"))
    for u in (100, 1):
        snapshot["data"]["u"] = u
        event = spot.parse(orjson.dumps(snapshot), 0)
        assert type(event) is Message and spot.step(event) is Step.SNAPSHOT
    delta = spot.parse(frame("orderbook_delta"), 0)
    assert type(delta) is Message and spot.step(delta) is Step.UPDATE
    trade = spot.parse(frame("publicTrade_push"), 0)
    assert type(trade) is Message and spot.step(trade) is Step.UPDATE
