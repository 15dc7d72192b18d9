"""OKX adapter: exact events from real frames, the books rules, replies and commands."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fastfeed.venues.events import Malformed, Message, Pong, Subscribed, VenueRejected
from fastfeed.venues.instream import Step
from fastfeed.venues.okx import OkxAdapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "okx"


def frame(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().strip()


def parse(raw: bytes) -> object:
    return OkxAdapter().parse(raw, 0)


def test_books_snapshot_and_update() -> None:
    snap, upd = frame("books_snapshot"), frame("books_update")
    assert parse(snap) == Message(
        "books", "BTC-USDT", 123456, 1597026383085, orjson.loads(snap), None, None
    )
    assert parse(upd) == Message(
        "books", "BTC-USDT", 123457, 1597026383085, orjson.loads(upd), None, first_seq=123457
    )


def test_bbo_and_trades_have_no_seq() -> None:
    bbo, trades = frame("bbo-tbt_push"), frame("trades_push")
    assert parse(bbo) == Message("bbo-tbt", "BTC-USDT", None, 1597026383085, orjson.loads(bbo))
    assert parse(trades) == Message("trades", "BTC-USDT", None, 1630048897897, orjson.loads(trades))


def test_replies_and_pong() -> None:
    assert parse(frame("subscribe_ack")) == Subscribed("books", ("BTC-USDT",), None)
    rejected = parse(frame("error_invalid_request"))
    assert type(rejected) is VenueRejected
    assert (rejected.code, rejected.fatal) == (60012, True)
    assert rejected.message.startswith("Invalid request")
    notice = b'{"event":"notice","code":"64008","msg":"The connection will soon be closed"}'
    assert parse(notice) == VenueRejected(
        "notice", 64008, "The connection will soon be closed", None, (), False
    )
    assert parse(b"pong") is not None and type(parse(b"pong")) is Pong


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"pon", "expected JSON at $"),
        (b"[]", "expected object at $, got array"),
        (b'{"arg":{"channel":"tickers","instId":"X"},"data":[{}]}', "unknown channel 'tickers'"),
        (b'{"arg":{"channel":"books","instId":"X"},"data":[]}', "expected a non-empty array"),
    ],
)
def test_malformed(raw: bytes, reason: str) -> None:
    event = parse(raw)
    assert type(event) is Malformed and event.reason.startswith(reason), event


def test_snapshot_flag_must_match_prev_seq_id() -> None:
    doc = orjson.loads(frame("books_update"))
    doc["data"][0]["prevSeqId"] = -1
    event = parse(orjson.dumps(doc))
    assert event == Malformed("expected prevSeqId -1 exactly on a snapshot, got -1 on update")


def test_commands() -> None:
    okx = OkxAdapter()
    assert okx.subscribe("books", ["btc-usdt", "ETH-USDT"]) == (
        b'{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},'
        b'{"channel":"books","instId":"ETH-USDT"}]}'
    )
    assert okx.ping() == b"ping"
    assert okx.channel("depth") == "books" and okx.channel("trade") == "trades"
    assert okx.channel("books5") == "books5" and okx.channel("tickers") is None
    assert okx.url("", None) == "wss://ws.okx.com:8443/ws/v5/public"
    assert okx.redacted_url("ws://user:pw@127.0.0.1:9") == "ws://127.0.0.1:9/ws/v5/public"


# -- the books chain (OKX "Order book channel" sequence rules) -----------------------------------
def books(prev: int, seq: int, *, empty: bool = False) -> Message:
    doc = orjson.loads(frame("books_snapshot" if prev == -1 else "books_update"))
    doc["data"][0].update(prevSeqId=prev, seqId=seq)
    if empty:
        doc["data"][0].update(asks=[], bids=[])
    event = OkxAdapter().parse(orjson.dumps(doc), 0)
    assert type(event) is Message
    return event


def test_step_rules() -> None:
    # What each message does to its chain; the chain itself is the sequence tracker's
    # (tests/test_pipeline_instream.py).
    okx = OkxAdapter()
    assert okx.step(books(-1, 10)) is Step.SNAPSHOT
    assert okx.step(books(10, 15)) is Step.UPDATE
    assert okx.step(books(15, 15, empty=True)) is Step.KEEPALIVE
    assert okx.step(books(15, 3)) is Step.RESET  # seqId < prevSeqId
    trades = OkxAdapter().parse(frame("trades_push"), 0)
    assert type(trades) is Message and okx.step(trades) is Step.UPDATE
