"""Venue adapters: sans-I/O protocol code, bytes in and events out (no sockets, no clock)."""

from __future__ import annotations

from fastfeed.venues.base import VenueAdapter
from fastfeed.venues.binance import BinanceAdapter, Market
from fastfeed.venues.tickdb import TickDBAdapter

__all__ = ["VENUES", "adapter_for"]

VENUES = ("tickdb", "sim", "binance", "binance-futures")  # `--venue` choices


def adapter_for(venue: str) -> VenueAdapter:
    """A fresh adapter for a ``--venue`` name (the simulator speaks TickDB).

    Raises:
        ValueError: an unknown venue (the config validates names first).
    """
    if venue in ("tickdb", "sim"):
        return TickDBAdapter()
    if venue in (Market.SPOT.value, Market.FUTURES.value):
        return BinanceAdapter(Market(venue))
    raise ValueError(f"unknown venue {venue!r}")
