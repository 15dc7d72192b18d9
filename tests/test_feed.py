"""The recorder's feed: the error a venue's final refusal stops it with."""

from __future__ import annotations

from fastfeed.recorder.feed import rejection_error
from fastfeed.venues.binance import BinanceAdapter
from fastfeed.venues.kraken import KrakenAdapter
from fastfeed.venues.tickdb import TickDBAdapter


def test_a_refusal_hints_at_what_the_venue_refuses() -> None:
    # Only TickDB has a key to get wrong; Binance and the in-stream venues are public feeds.
    assert rejection_error(TickDBAdapter(), 1001, "bad key").hint == (
        "check TICKDB_API_KEY / --api-key-file"
    )
    for adapter in (BinanceAdapter(), KrakenAdapter()):
        error = rejection_error(adapter, -1, "Invalid symbol")
        assert (error.code, error.hint) == (-1, "check the channel and symbol names")
