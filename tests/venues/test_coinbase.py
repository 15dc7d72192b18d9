"""Coinbase adapter: exact events from real frames, the connection-wide sequence, commands."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fastfeed.derive.continuity import MAX_HOLES, CoinbaseSequence, Verdict, Verdicts
from fastfeed.venues.coinbase import CoinbaseAdapter
from fastfeed.venues.events import Malformed, Message, Pong, Subscribed, VenueRejected

FIXTURES = Path(__file__).parent.parent / "fixtures" / "coinbase"


def frame(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().strip()


def test_level2_and_trades() -> None:
    cb = CoinbaseAdapter()
    snap, upd = frame("level2_snapshot"), frame("level2_update")
    trades = frame("market_trades_push")
    assert cb.parse(snap, 0) == Message("level2", "BTC-USD", 0, 1775572200123, orjson.loads(snap))
    assert cb.parse(upd, 0) == Message("level2", "BTC-USD", 1, 1775572201456, orjson.loads(upd))
    assert cb.sequence_num == 1
    assert cb.parse(trades, 0) == Message(
        "market_trades", "BTC-USD", 5, 1775572202789, orjson.loads(trades)
    )


def test_heartbeats_and_acks_carry_the_connection_sequence() -> None:
    cb = CoinbaseAdapter()
    assert cb.opening_commands() == [b'{"type":"subscribe","channel":"heartbeats"}']
    assert cb.subscribe("level2", ["btc-usd"]) == (
        b'{"type":"subscribe","channel":"level2","product_ids":["BTC-USD"]}'
    )
    assert cb.parse(frame("subscriptions_ack"), 0) == Subscribed("heartbeats", (), None)
    assert cb.parse(frame("subscriptions_ack"), 0) == Subscribed("level2", ("BTC-USD",), None)
    assert type(cb.parse(frame("heartbeats_push"), 0)) is Pong
    assert cb.sequence_num == 0
    error = b'{"type":"error","message":"Failed to subscribe"}'
    cb.subscribe("market_trades", ["NOPE-USD"])
    assert cb.parse(error, 0) == VenueRejected(
        "subscribe", -1, "Failed to subscribe", "market_trades", ("NOPE-USD",), True
    )
    assert cb.sequence_num is None


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b'"sequence_num":1', b'"sequence_num":-1', "expected non-negative int64 at $.sequence"),
        (b'"channel":"l2_data"', b'"channel":"ticker"', "unknown channel 'ticker' at $.channel"),
        (b'"type":"update"', b'"type":"delta"', "expected 'snapshot' or 'update' at $.events[0]"),
        (b'"timestamp":"2026-04-07T14:30:01.456789Z"', b'"timestamp":"x"', "expected RFC 3339"),
    ],
)
def test_malformed(old: bytes, new: bytes, reason: str) -> None:
    raw = frame("level2_update").replace(old, new, 1)
    assert raw != frame("level2_update")
    event = CoinbaseAdapter().parse(raw, 0)
    assert type(event) is Malformed and event.reason.startswith(reason), event


def test_sequence_rules() -> None:
    """Advanced Trade "Sequence Numbers": +1 per message on a connection, any channel."""
    seq = CoinbaseSequence()
    assert seq.check(0).verdict is Verdict.SNAPSHOT  # the connection's first message
    assert seq.check(1).verdict is Verdict.IN_ORDER
    assert seq.check(4) == Verdicts(Verdict.GAP, opened=((2, 3),))
    assert seq.check(3).verdict is Verdict.LATE
    assert seq.check(2).verdict is Verdict.LATE
    assert seq.check(2).verdict is Verdict.DUPLICATE
    assert seq.chain.holes(seq.KEY) == ()


def test_settle_gives_up_the_holes() -> None:
    seq = CoinbaseSequence()
    seq.check(7)
    seq.check(10)
    assert seq.settle() == ((8, 9),)
    assert seq.check(9).verdict is Verdict.DUPLICATE  # too late now: the resync replaced it


def test_past_max_holes_the_oldest_is_lost() -> None:
    seq = CoinbaseSequence()
    seq.check(0)
    for n in range(MAX_HOLES):
        seq.check(2 * n + 2)  # each skips one number
    assert len(seq.chain.holes(seq.KEY)) == MAX_HOLES
    assert seq.check(2 * MAX_HOLES + 2) == Verdicts(
        Verdict.GAP, lost=((1, 1),), opened=((2 * MAX_HOLES + 1, 2 * MAX_HOLES + 1),)
    )
