"""Content determinism and book shape, history caps, deflate negotiation, CLI options."""

from __future__ import annotations

import argparse
import itertools
import zlib
from decimal import Decimal

import orjson
import pytest

from fastfeed.errors import ConfigError
from fastfeed.sim import FaultPlan, add_sim_arguments, message, sim_config_from_args
from fastfeed.sim.content import StreamGenerator, stamp
from fastfeed.sim.history import StreamHistory, StreamTable
from fastfeed.sim.wire import frame_header, negotiate_deflate


def test_same_seq_twice_same_bytes_and_generator_matches_reference() -> None:
    gen = StreamGenerator(7, "depth", "AAPL.US")
    frames = [gen.next() for _ in range(300)]
    assert message(7, "depth", "AAPL.US", 300) == frames[-1]
    assert message(7, "depth", "AAPL.US", 300) == message(7, "depth", "AAPL.US", 300)
    assert message(8, "depth", "AAPL.US", 300) != frames[-1]
    assert message(7, "depth", "TSLA.US", 300) != frames[-1]


def test_first_message_exact_bytes() -> None:
    assert message(1, "trade", "A.US", 1) == (
        b'{"cmd":"trade","seq":1,"data":{"symbol":"A.US","price":"372.48","quantity":"132",'
        b'"side":"buy","timestamp":1732406400005}}'
    )


def test_depth_books_are_consistent_and_walk_is_plausible() -> None:
    gen = StreamGenerator(1, "depth", "AAPL.US", depth_levels=7)
    mids = []
    for seq in range(1, 3001):
        doc = orjson.loads(gen.next())
        assert doc["seq"] == seq
        data = doc["data"]
        assert data["timestamp"] == 1_732_406_400_000 + 5 * seq
        bids = [Decimal(p) for p, _ in data["bids"]]
        asks = [Decimal(p) for p, _ in data["asks"]]
        assert len(bids) == len(asks) == 7
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert Decimal(0) < bids[0] < asks[0] <= bids[0] + Decimal("0.02")
        assert all(int(size) > 0 for _, size in data["bids"] + data["asks"])
        mids.append(bids[0])
    assert all(abs(b - a) <= Decimal("0.01") for a, b in itertools.pairwise(mids))
    assert len(set(mids)) > 10  # it moves


def test_plain_mode_is_the_same_content_without_seq_and_stamp_inserts_sent_ns() -> None:
    ext = orjson.loads(message(3, "ticker", "X", 40))
    plain = message(3, "ticker", "X", 40, plain=True)
    del ext["seq"]
    assert orjson.loads(plain) == ext
    stamped = stamp(message(3, "ticker", "X", 40), 99)
    assert stamped.startswith(b'{"cmd":"ticker","seq":40,"sent_ns":99,"data":')


def test_symbol_is_json_escaped() -> None:
    assert orjson.loads(message(1, "trade", 'A"%s', 1))["data"]["symbol"] == 'A"%s'


def test_history_message_cap_and_first_seq() -> None:
    history = StreamHistory(3)
    for i in range(10):
        history.append(b"m%d" % (i + 1))
    assert (history.first_seq, history.head_seq, len(history)) == (8, 10, 3)
    assert history.slice(8, 5) == [b"m8", b"m9", b"m10"]
    with pytest.raises(ValueError, match="no longer held"):
        history.slice(7, 1)


def test_table_byte_cap_evicts_oldest() -> None:
    table = StreamTable(1, plain=False, depth_levels=5, max_messages=10**6, max_bytes=10_000)
    a = table.get_or_create("trade", "A", 0.0)
    b = table.get_or_create("trade", "B", 0.0)
    table.advance(a, 200)
    table.advance(b, 200)
    assert table.nbytes == a.history.nbytes + b.history.nbytes <= 10_000
    assert b.history.first_seq > 1 and a.history.head_seq == 200
    assert a.history.slice(a.history.first_seq, 1) == [
        message(1, "trade", "A", a.history.first_seq)
    ]


def test_deflate_negotiation_and_round_trip() -> None:
    assert negotiate_deflate(None) is None
    assert negotiate_deflate("x-other") is None
    assert negotiate_deflate("permessage-deflate; unknown=1") is None
    header, state = negotiate_deflate(
        "permessage-deflate; server_max_window_bits=8, "
        "permessage-deflate; server_no_context_takeover; client_max_window_bits"
    ) or ("", None)
    assert header == "permessage-deflate; server_no_context_takeover"
    assert state is not None
    for payload in (b"hello" * 50, b"again"):
        data = state.compress(payload)
        assert zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff") == payload
    assert state.decompress(state.compress(b"abc"), 10) == b"abc"
    with pytest.raises(ValueError, match="larger"):
        state.decompress(state.compress(b"a" * 100), 10)


def test_frame_headers() -> None:
    assert frame_header(1, 5) == b"\x81\x05"
    assert frame_header(1, 126) == b"\x81\x7e\x00\x7e"
    assert frame_header(2, 70_000, compressed=True) == b"\xc2\x7f" + (70_000).to_bytes(8, "big")


def test_config_from_command_line() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    ns = parser.parse_args(
        [
            "--port",
            "0",
            "--rate",
            "50",
            "--burst",
            "--plain-tickdb",
            "--api-key",
            "k",
            "--deflate",
            "--stream",
            "depth:A.US,B.US",
            "--fault-abort-after",
            "9",
            "--fault-skip-rate",
            "0.1",
            "--fault-reject-symbols",
            "X,Y",
            "--fault-garbage-kinds",
            "text,binary",
        ]
    )
    config = sim_config_from_args(ns)
    assert (config.rate, config.burst, config.plain_tickdb, config.api_key) == (50, True, True, "k")
    assert config.streams == (("depth", "A.US"), ("depth", "B.US"))
    assert config.faults == FaultPlan(
        abort_after=9,
        skip_rate=0.1,
        reject_symbols=frozenset({"X", "Y"}),
        garbage_kinds=("text", "binary"),
    )
    with pytest.raises(ConfigError):
        sim_config_from_args(parser.parse_args(["--fault-skip-rate", "2"]))
