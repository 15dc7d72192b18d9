"""Micro benchmarks of the OKX, Bybit, Coinbase and Kraken parsers, with their baselines.

Run as ``pytest bench/test_venue_parsers.py`` (pytest-benchmark; not part of the test suite).
Baselines: ``orjson.loads`` of the same frame (what any adapter pays first), and for the Kraken
book checker ``json.loads`` with numbers kept as text (what exact decimals cost before any
book work). Compare the ratios, not the absolute times.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastfeed.derive.kraken_book import KrakenBooks
from fastfeed.derive.sequence import SequenceTracker
from fastfeed.derive.streams import StreamKey
from fastfeed.venues.bybit import BybitAdapter
from fastfeed.venues.coinbase import CoinbaseAdapter
from fastfeed.venues.events import Message
from fastfeed.venues.kraken import KrakenAdapter
from fastfeed.venues.okx import OkxAdapter

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
FRAMES = {
    "okx": (OkxAdapter(), "okx/books_update.json"),
    "bybit": (BybitAdapter(), "bybit/orderbook_delta.json"),
    "coinbase": (CoinbaseAdapter(), "coinbase/level2_update.json"),
    "kraken": (KrakenAdapter(), "kraken/book_update.json"),
}


def _frame(path: str) -> bytes:
    return (FIXTURES / path).read_bytes().strip()


@pytest.mark.parametrize("venue", sorted(FRAMES))
def test_orjson_loads_baseline(benchmark: Any, venue: str) -> None:
    benchmark(orjson.loads, _frame(FRAMES[venue][1]))


@pytest.mark.parametrize("venue", sorted(FRAMES))
def test_parse(benchmark: Any, venue: str) -> None:
    adapter, path = FRAMES[venue]
    benchmark(adapter.parse, _frame(path), 0)


def test_okx_parse_and_detect(benchmark: Any) -> None:
    adapter, tracker, raw = OkxAdapter(), SequenceTracker(), _frame("okx/books_update.json")
    tracker.restart(StreamKey("books", "BTC-USDT"), 0, 0)
    state = {"seq": 0}
    doc = orjson.loads(raw)

    def step() -> None:
        # A fresh, chained update each round: prevSeqId = the last seqId.
        seq = state["seq"]
        doc["data"][0]["prevSeqId"], doc["data"][0]["seqId"] = seq, seq + 1
        state["seq"] = seq + 1
        event = adapter.parse(orjson.dumps(doc), 0)
        assert type(event) is Message and event.first_seq is not None
        adapter.step(event)
        tracker.observe_range(StreamKey("books", event.symbol), event.first_seq, event.seq or 0, 0)

    benchmark(step)


def test_text_numbers_baseline(benchmark: Any) -> None:
    benchmark(json.loads, _frame("kraken/book_update.json"), parse_float=str, parse_int=str)


def test_kraken_book_apply(benchmark: Any) -> None:
    """Snapshot + the real update (the checksum is checked on both), per round."""
    snap, upd = _frame("kraken/book_snapshot.json"), _frame("kraken/book_update.json")
    books = KrakenBooks(lambda symbol: 10)

    def both() -> None:
        books.apply(snap)
        books.apply(upd)

    benchmark(both)
