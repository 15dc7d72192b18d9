"""Splitting a subscription set across connections (Binance: 1024 streams each)."""

from __future__ import annotations

from fastfeed.recorder.config import parse_channel_specs
from fastfeed.recorder.shards import split_streams


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
