"""TickDB adapter: exact events from fixture frames, a fuzz contract, builders and URLs."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed.venues.events import (
    Malformed,
    Message,
    Pong,
    StreamRange,
    Subscribed,
    Unsubscribed,
    VenueRejected,
    new_message,
)
from fastfeed.venues.tickdb import TickDBAdapter, validate_symbol

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tickdb"
RECV_NS = 1_732_406_400_200_000_000


def frame(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def parse(raw: bytes | str, *, binary: bool = False) -> object:
    data = raw.encode() if isinstance(raw, str) else raw
    return TickDBAdapter().parse(data, RECV_NS, binary=binary)


# -- fixtures: one per message kind -------------------------------------------------------------
def test_depth_push_plain() -> None:
    assert parse(frame("depth_push")) == Message(
        "depth",
        "AAPL.US",
        None,
        1732406400123,
        {
            "symbol": "AAPL.US",
            "bids": [["189.10", "300"], ["189.09", "200"]],
            "asks": [["189.11", "100"], ["189.12", "400"]],
            "timestamp": 1732406400123,
        },
        None,
    )


def test_depth_push_with_seq_and_sent_ns() -> None:
    assert parse(frame("depth_push_seq")) == Message(
        "depth",
        "AAPL.US",
        1042,
        1732406400123,
        {
            "symbol": "AAPL.US",
            "bids": [["189.10", "300"]],
            "asks": [["189.11", "100"]],
            "timestamp": 1732406400123,
        },
        1732406400123456789,
    )


def test_trade_push() -> None:
    assert parse(frame("trade_push")) == Message(
        "trade",
        "TSLA.US",
        7,
        1732406400456,
        {
            "symbol": "TSLA.US",
            "price": "251.30",
            "quantity": "15",
            "side": "buy",
            "timestamp": 1732406400456,
        },
        None,
    )


def test_ticker_push_from_memoryview() -> None:
    event = TickDBAdapter().parse(memoryview(frame("ticker_push")), RECV_NS)
    assert event == Message(
        "ticker",
        "BTC/USD:X",
        None,
        1732406400789,
        {"symbol": "BTC/USD:X", "last": "97000.5", "volume": "1234.5", "timestamp": 1732406400789},
        None,
    )


def test_plain_subscribe_ack_has_no_streams() -> None:
    assert parse(frame("subscribe_ack")) == Subscribed("depth", ("AAPL.US", "TSLA.US"), None)


def test_bare_subscribe_ack() -> None:
    assert parse('{"cmd":"subscribe","code":0,"message":"ok"}') == Subscribed(None, (), None)


def test_subscribe_ack_with_streams() -> None:
    assert parse(frame("subscribe_ack_resume")) == Subscribed(
        "depth",
        ("AAPL.US", "TSLA.US"),
        {"AAPL.US": StreamRange(1042, 1500), "TSLA.US": StreamRange(1, 0)},
    )


def test_unsubscribe_ack() -> None:
    assert parse(frame("unsubscribe_ack")) == Unsubscribed("trade", ("TSLA.US",))


def test_pong() -> None:
    assert parse(frame("pong")) == Pong()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("error_1001", VenueRejected("error", 1001, "Invalid API key", None, (), True)),
        ("error_4001", VenueRejected("error", 4001, "API key expired", None, (), True)),
        (
            "error_2002",
            VenueRejected("subscribe", 2002, "Unknown symbol", "depth", ("NOPE.US",), False),
        ),
        ("error_3001", VenueRejected("subscribe", 3001, "Rate limit exceeded", None, (), False)),
    ],
)
def test_errors(name: str, expected: VenueRejected) -> None:
    assert parse(frame(name)) == expected


def test_fatal_rejection_survives_odd_fields() -> None:
    odd = '{"cmd":"error","code":1001,"message":7,"data":{"channel":"x","symbols":["bad sym",3]}}'
    assert parse(odd) == VenueRejected("error", 1001, "", None, (), True)


# -- malformed: the reason says what was expected and where -------------------------------------
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"cmd":"depth","seq":"5","data":[]}', "expected object at $.data, got array"),
        (
            '{"cmd":"trade","seq":"5","data":{"symbol":"A","price":"1","quantity":"1",'
            '"side":"buy","timestamp":1}}',
            "expected positive int64 at $.seq, got str",
        ),
        (
            '{"cmd":"trade","seq":0,"data":{"symbol":"A","price":"1","quantity":"1",'
            '"side":"buy","timestamp":1}}',
            "expected positive int64 at $.seq, got int 0",
        ),
        (
            '{"cmd":"trade","seq":true,"data":{"symbol":"A","price":"1","quantity":"1",'
            '"side":"buy","timestamp":1}}',
            "expected positive int64 at $.seq, got bool",
        ),
        (
            '{"cmd":"trade","data":{"symbol":"A","price":1.5,"quantity":"1","side":"buy",'
            '"timestamp":1}}',
            "expected str at $.data.price, got float",
        ),
        (
            '{"cmd":"ticker","data":{"symbol":"A","last":"1","timestamp":1}}',
            "expected str at $.data.volume, got null or missing",
        ),
        (
            '{"cmd":"depth","data":{"symbol":"A","bids":[["1","2"]],"asks":[["1"]],"timestamp":1}}',
            "expected [price, size] strings at $.data.asks[0]",
        ),
        (
            '{"cmd":"depth","data":{"symbol":"A","bids":{},"asks":[],"timestamp":1}}',
            "expected array at $.data.bids, got object",
        ),
        (
            '{"cmd":"depth","data":{"symbol":"A","bids":[],"asks":[],"timestamp":"1"}}',
            "expected int64 at $.data.timestamp, got str",
        ),
        (
            '{"cmd":"depth","data":{"symbol":"A B","bids":[],"asks":[],"timestamp":1}}',
            "bad symbol 'A B' at $.data.symbol: expected only letters, digits and . _ : / -",
        ),
        (
            '{"cmd":"depth","sent_ns":1.5,"data":{"symbol":"A","bids":[],"asks":[],"timestamp":1}}',
            "expected non-negative int64 at $.sent_ns, got float",
        ),
        ('{"cmd":"quote","data":{}}', "expected a push, pong, ack or error at $.cmd, got 'quote'"),
        ('{"data":{}}', "expected str at $.cmd, got null or missing"),
        ("[1,2]", "expected object at $, got array"),
        ('{"cmd":"subscribe","code":"0"}', "expected int at $.code, got str"),
        (
            '{"cmd":"subscribe","code":0,"data":{"channel":"news","symbols":[]}}',
            "expected one of depth, trade, ticker at $.data.channel",
        ),
        (
            '{"cmd":"subscribe","code":0,"data":{"channel":"depth","symbols":["A"],'
            '"streams":{"A":{"first_seq":0,"head_seq":3}}}}',
            "expected positive int64 at $.data.streams['A'].first_seq, got int 0",
        ),
        (
            '{"cmd":"subscribe","code":0,"data":{"symbols":["A"],'
            '"streams":{"A":{"first_seq":1,"head_seq":3}}}}',
            "expected a channel at $.data.channel when $.data.streams is given",
        ),
        (
            '{"cmd":"unsubscribe","code":0,"data":{"channel":"depth","symbols":["A",1]}}',
            "expected a valid symbol at $.data.symbols[1]",
        ),
    ],
)
def test_malformed_reasons(raw: str, reason: str) -> None:
    assert parse(raw) == Malformed(reason)


def test_not_json_and_binary() -> None:
    event = parse(b"{not json")
    assert isinstance(event, Malformed)
    assert event.reason.startswith("expected JSON at $: ")
    assert parse(frame("pong"), binary=True) == Malformed(
        "expected a text frame, got a binary frame"
    )


def test_symbol_validation() -> None:
    assert validate_symbol("AAPL.US") is None
    assert validate_symbol("BTC/USD:X_1-2") is None
    assert validate_symbol("A" * 32) is None
    assert validate_symbol("A" * 33) == "longer than 32 characters"
    assert validate_symbol("") == "empty symbol"
    assert validate_symbol("AAPL US") == "expected only letters, digits and . _ : / -"
    assert validate_symbol("AAPL\n") == "expected only letters, digits and . _ : / -"


def test_new_message_equals_constructor() -> None:
    args = ("depth", "A", 3, 4, {"k": 1}, 5)
    built = new_message(*args)
    assert built == Message(*args)
    assert type(built) is Message
    with pytest.raises(AttributeError):
        built.seq = 9  # type: ignore[misc]


# -- the contract: parse never raises ----------------------------------------------------------
VALID_FRAMES = sorted(p.read_bytes() for p in FIXTURES.glob("*.json"))
KNOWN = (Message, Subscribed, Unsubscribed, Pong, VenueRejected, Malformed)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert isinstance(TickDBAdapter().parse(data, 0), KNOWN)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_truncated_and_bit_flipped_frames_never_raise(valid: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(valid)))
    flips = data.draw(st.lists(st.integers(0, len(valid) * 8 - 1), max_size=4))
    damaged = bytearray(valid)
    for bit in flips:
        damaged[bit // 8] ^= 1 << (bit % 8)
    adapter = TickDBAdapter()
    assert isinstance(adapter.parse(bytes(damaged), 0), KNOWN)
    assert isinstance(adapter.parse(valid[:cut], 0), KNOWN)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["depth", "trade", "ticker", "subscribe", "unsubscribe", "error", "ping"]),
    json_values,
    json_values,
    json_values,
)
def test_wrong_shapes_never_raise(cmd: str, data: object, code: object, seq: object) -> None:
    doc = {"cmd": cmd, "data": data, "seq": seq}
    if cmd not in ("depth", "trade", "ticker"):
        doc["code"] = code
    raw = json.dumps(doc).encode()
    assert isinstance(TickDBAdapter().parse(raw, 0), KNOWN)


# -- builders and URLs --------------------------------------------------------------------------
def test_subscribe_with_resume_round_trips() -> None:
    raw = TickDBAdapter().subscribe("depth", ["AAPL.US", "TSLA.US"], {"AAPL.US": 1042})
    assert json.loads(raw) == {
        "cmd": "subscribe",
        "data": {
            "channel": "depth",
            "symbols": ["AAPL.US", "TSLA.US"],
            "resume": {"AAPL.US": 1042},
        },
    }
    assert b" " not in raw


def test_subscribe_without_resume_and_unsubscribe_and_ping() -> None:
    adapter = TickDBAdapter()
    assert json.loads(adapter.subscribe("trade", ("A",), {})) == {
        "cmd": "subscribe",
        "data": {"channel": "trade", "symbols": ["A"]},
    }
    assert json.loads(adapter.unsubscribe("trade", ["A"])) == {
        "cmd": "unsubscribe",
        "data": {"channel": "trade", "symbols": ["A"]},
    }
    assert adapter.ping() == b'{"cmd":"ping"}'


def test_url_encodes_the_key_and_keeps_the_query() -> None:
    adapter = TickDBAdapter()
    url = adapter.url("wss://api.tickdb.ai/v1/realtime?region=us&api_key=old", "k&y=1 /+")
    assert url == "wss://api.tickdb.ai/v1/realtime?region=us&api_key=k%26y%3D1+%2F%2B"
    assert adapter.url("ws://127.0.0.1:9/v1/realtime", None) == "ws://127.0.0.1:9/v1/realtime"


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_.~"), max_size=30
    ),
    st.text(max_size=30),
)
def test_redacted_url_never_holds_the_key(plain: str, anything: str) -> None:
    adapter = TickDBAdapter()
    key = f"SECRET{plain}"
    endpoint = f"wss://user:{key}@api.tickdb.ai/v1/realtime?api_key={key}&x=1"
    redacted = adapter.redacted_url(endpoint)
    assert "SECRET" not in redacted
    assert redacted == "wss://user:***@api.tickdb.ai/v1/realtime?x=1&api_key=***"
    # A key of any characters, as url() encodes it into the query.
    url = adapter.url("wss://api.tickdb.ai/v1/realtime", f"SECRET{anything}")
    assert "SECRET" not in adapter.redacted_url(url)


def test_redacted_url_shape() -> None:
    assert (
        TickDBAdapter().redacted_url("wss://api.tickdb.ai/v1/realtime")
        == "wss://api.tickdb.ai/v1/realtime?api_key=***"
    )


def test_parse_does_not_mutate_across_frames() -> None:
    # The symbol cache must not let an invalid symbol through after a valid one was seen.
    adapter = TickDBAdapter()
    ok = orjson.loads(frame("trade_push"))
    assert isinstance(adapter.parse(orjson.dumps(ok), 0), Message)
    ok["data"]["symbol"] = "TSLA US"
    assert isinstance(adapter.parse(orjson.dumps(ok), 0), Malformed)
