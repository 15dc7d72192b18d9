"""Kraken adapter: exact events from real frames, replies and commands; book faults."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fastfeed.derive.kraken_book import BookCheck, KrakenBooks
from fastfeed.venues.events import Malformed, Message, Pong, Subscribed, VenueRejected
from fastfeed.venues.kraken import KrakenAdapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kraken"


def frame(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().strip()


def test_book_and_trade() -> None:
    kraken = KrakenAdapter()
    snap, upd, trade = frame("book_snapshot"), frame("book_update"), frame("trade_push")
    assert kraken.parse(snap, 0) == Message("book", "ALGO/USD", None, None, orjson.loads(snap))
    assert kraken.parse(upd, 0) == Message(
        "book", "ALGO/USD", None, 1727923617050, orjson.loads(upd)
    )
    assert kraken.parse(trade, 0) == Message(
        "trade", "BTC/USD", None, 1696613756123, orjson.loads(trade)
    )


def test_book_depth_names_the_channel() -> None:
    kraken = KrakenAdapter()
    assert kraken.subscribe("book-25", ["ALGO/USD"]) == (
        b'{"method":"subscribe","params":{"channel":"book","symbol":["ALGO/USD"],"depth":25},'
        b'"req_id":1}'
    )
    assert kraken.depth_of("ALGO/USD") == 25
    event = kraken.parse(frame("book_update"), 0)
    assert type(event) is Message and event.channel == "book-25"
    assert kraken.channel("depth") == "book" and kraken.channel("book-1000") == "book-1000"
    assert kraken.channel("book-11") is None


def test_replies_and_keepalives() -> None:
    kraken = KrakenAdapter()
    kraken.subscribe("book", ["ALGO/USD"])
    assert kraken.parse(frame("subscribe_ack"), 0) == Subscribed(None, ("ALGO/USD",), None)
    ack = frame("subscribe_ack")[:-1] + b',"req_id":1}'
    assert kraken.parse(ack, 0) == Subscribed("book", ("ALGO/USD",), None)
    refused = (
        b'{"error":"Currency pair not supported NOPE/USD","method":"subscribe","req_id":1,'
        b'"success":false,"symbol":"NOPE/USD"}'
    )
    assert kraken.parse(refused, 0) == VenueRejected(
        "subscribe", -1, "Currency pair not supported NOPE/USD", "book", ("NOPE/USD",), True
    )
    assert type(kraken.parse(frame("status_online"), 0)) is Pong
    assert type(kraken.parse(b'{"channel":"heartbeat"}', 0)) is Pong
    assert type(kraken.parse(b'{"method":"pong","req_id":7}', 0)) is Pong
    maintenance = frame("status_online").replace(b'"online"', b'"maintenance"')
    assert kraken.parse(maintenance, 0) == VenueRejected(
        "status", -1, "Kraken status 'maintenance'", None, (), False
    )
    assert kraken.url("", None) == "wss://ws.kraken.com/v2"


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b'"checksum":1100635717', b'"checksum":-1', "expected uint32 at $.data[0].checksum"),
        (b'"qty":6597.51731160', b'"qty":"6597.5"', "expected [{price, qty}] numbers"),
        (b'"type":"update"', b'"type":"delta"', "expected 'snapshot' or 'update' at $.type"),
        (b'"channel":"book"', b'"channel":"ohlc"', "unknown channel 'ohlc' at $.channel"),
    ],
)
def test_malformed(old: bytes, new: bytes, reason: str) -> None:
    raw = frame("book_update").replace(old, new, 1)
    event = KrakenAdapter().parse(raw, 0)
    assert type(event) is Malformed and event.reason.startswith(reason), event


# -- faults on the book checker (only after the real checksums pass: test_kraken_book.py) --------
def _update(bid_price: str, qty: str, crc: int) -> bytes:
    return (
        '{"channel":"book","type":"update","data":[{"symbol":"ALGO/USD","bids":'
        f'[{{"price":{bid_price},"qty":{qty}}}],"asks":[],"checksum":{crc}}}]}}'
    ).encode()


def test_a_lost_update_shows_at_the_next_checksum_and_waits_for_a_snapshot() -> None:
    books = KrakenBooks(lambda symbol: 10)
    books.apply(frame("book_snapshot"))
    # The real update is lost; the one after it carries a checksum of a book we do not have.
    (result,) = books.apply(_update("0.12274", "1.0", 1))
    assert result.check is BookCheck.MISMATCH and result.expected == 1
    (after,) = books.apply(frame("book_update"))
    assert after.check is BookCheck.UNSYNCED  # not counted again until the new snapshot
    books.apply(frame("book_snapshot"))
    assert books.apply(frame("book_update"))[0].check is BookCheck.OK


def test_crossed_book() -> None:
    books = KrakenBooks(lambda symbol: 10)
    books.apply(frame("book_snapshot"))
    raw = _update("0.12400", "5.0", 0)
    crc = books.apply(raw)[0].computed  # learn the checksum the crossed book has
    books.apply(frame("book_snapshot"))
    assert crc is not None
    (result,) = books.apply(_update("0.12400", "5.0", crc))
    assert result.check is BookCheck.CROSSED


def test_unreadable_book_frames() -> None:
    books = KrakenBooks(lambda symbol: 10)
    assert books.apply(b"{")[0].check is BookCheck.MALFORMED
    assert books.apply(b'{"channel":"trade"}')[0].check is BookCheck.MALFORMED
    bad = frame("book_snapshot").replace(b'"price":0.12291', b'"price":NaN')
    assert books.apply(bad)[0].check is BookCheck.MALFORMED
