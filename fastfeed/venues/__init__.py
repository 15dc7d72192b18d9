"""Venue adapters: sans-I/O protocol code, bytes in and events out (no sockets, no clock).

This package's front door stays light (the command line imports ``VENUES`` before its signal
handlers are up): ``adapter_for`` loads an adapter module when one is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastfeed.venues.base import VenueAdapter

__all__ = ["VENUES", "adapter_for"]

# `--venue` choices
VENUES = (
    "tickdb",
    "sim",
    "binance",
    "binance-futures",
    "okx",
    "bybit",
    "bybit-linear",
    "coinbase",
    "kraken",
)


def adapter_for(venue: str) -> VenueAdapter:
    """A fresh adapter for a ``--venue`` name (the simulator speaks TickDB).

    Raises:
        ValueError: an unknown venue (the config validates names first).
    """
    if venue in ("tickdb", "sim"):
        from fastfeed.venues.tickdb import TickDBAdapter

        return TickDBAdapter()
    if venue in ("binance", "binance-futures"):
        from fastfeed.venues.binance import BinanceAdapter, Market

        return BinanceAdapter(Market(venue))
    if venue == "okx":
        from fastfeed.venues.okx import OkxAdapter

        return OkxAdapter()
    if venue in ("bybit", "bybit-linear"):
        from fastfeed.venues.bybit import BybitAdapter, Category

        return BybitAdapter(Category(venue))
    if venue == "coinbase":
        from fastfeed.venues.coinbase import CoinbaseAdapter

        return CoinbaseAdapter()
    if venue == "kraken":
        from fastfeed.venues.kraken import KrakenAdapter

        return KrakenAdapter()
    raise ValueError(f"unknown venue {venue!r}")
