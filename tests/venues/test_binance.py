"""Binance adapter: exact events from real frames, the sequence fields, replies, snapshots."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed.venues.binance import BinanceAdapter, Market, channels_help, validate_symbol
from fastfeed.venues.events import (
    Malformed,
    Message,
    Snapshot,
    Subscribed,
    Unsubscribed,
    VenueRejected,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance"
RECV_NS = 1_633_998_512_063_356_900
SPOT = Market.SPOT
FUTURES = Market.FUTURES


def frame(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().strip()


def parse(raw: bytes | str, market: Market = SPOT) -> object:
    data = raw.encode() if isinstance(raw, str) else raw
    return BinanceAdapter(market).parse(data, RECV_NS)


def recorded_frames() -> list[bytes]:
    """Every frame of the recorded spot session, in order."""
    lines = (FIXTURES / "spot_recorded.ws").read_bytes().splitlines()
    return [ln.split(b": ", 1)[1] for ln in lines if ln and not ln.startswith(b"wss://")]


def recorded_snapshots() -> list[tuple[str, bytes]]:
    """(URL, body) of every recorded REST depth snapshot."""
    out = []
    for line in (FIXTURES / "spot_recorded.http").read_bytes().splitlines():
        if not line:
            continue
        url, _, rest = line.partition(b" -> ")
        out.append((url.decode(), rest.split(b": ", 1)[1]))
    return out


# -- real frames, one per kind -----------------------------------------------------------------
def test_spot_depth_push() -> None:
    raw = frame("depth_push")
    data = orjson.loads(raw)["data"]
    assert parse(raw) == Message(
        "depth", "NKNUSDT", 499869752, 1633998512068, data, None, first_seq=499869750
    )


def test_futures_depth_push_covers_pu_plus_one_to_u() -> None:
    raw = frame("depth_push_futures")
    data = orjson.loads(raw)["data"]
    assert parse(raw, FUTURES) == Message(
        "depth", "BTCUSDT", 160, 123456789, data, None, first_seq=150
    )


def test_spot_depth_push_without_pu_is_malformed_on_futures() -> None:
    event = parse(frame("depth_push"), FUTURES)
    assert event == Malformed("expected int64 below $.data.u at $.data.pu, got null or missing")


def test_agg_trade_seq_is_a() -> None:
    raw = frame("aggTrade_push")
    data = orjson.loads(raw)["data"]
    for market in (SPOT, FUTURES):
        assert parse(raw, market) == Message(
            "aggTrade", "NKNUSDT", 15683430, 1633998523963, data, None
        )


def test_trade_seq_is_t_on_spot_only() -> None:
    raw = frame("trade_push")
    data = orjson.loads(raw)["data"]
    assert parse(raw) == Message("trade", "BNBBTC", 12345, 1672515782136, data, None)
    assert parse(raw, FUTURES) == Message("trade", "BNBBTC", None, 1672515782136, data, None)


def test_book_ticker_has_no_seq_and_spot_no_time() -> None:
    raw = frame("bookTicker_push")
    data = orjson.loads(raw)["data"]
    assert parse(raw) == Message("bookTicker", "NKNUSDT", None, None, data, None)


def test_kline() -> None:
    raw = frame("kline_push")
    data = orjson.loads(raw)["data"]
    assert parse(raw) == Message("kline_1m", "NKNUSDT", None, 1633998523963, data, None)


def test_every_recorded_frame_parses_to_a_message() -> None:
    frames = recorded_frames()
    assert len(frames) == 265
    events = [parse(f) for f in frames]
    assert all(type(e) is Message for e in events)
    depth = [e for e in events if type(e) is Message and e.channel == "depth"]
    assert len(depth) == 177


def test_stream_type_names() -> None:
    spot_plain = b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
    spot_plain += b'"U":5,"u":6,"b":[],"a":[]}}'
    event = parse(spot_plain)
    assert type(event) is Message and event.channel == "depth@1000ms"
    assert parse(spot_plain.replace(b'"U"', b'"pu":4,"U"'), FUTURES) == Message(
        "depth@250ms", "BTCUSDT", 6, 1, orjson.loads(spot_plain)["data"] | {"pu": 4}, None, 5
    )


# -- replies ------------------------------------------------------------------------------------
def test_subscribe_ack_names_what_it_acknowledges() -> None:
    adapter = BinanceAdapter()
    cmd = orjson.loads(adapter.subscribe("depth", ["btcusdt", "ETHUSDT"]))
    assert cmd == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@depth@100ms", "ethusdt@depth@100ms"],
        "id": 1,
    }
    ack = adapter.parse(frame("subscribe_ack"), RECV_NS)
    assert ack == Subscribed("depth", ("BTCUSDT", "ETHUSDT"), None)
    # The same ack again (or after a restart, from the journal) names nothing.
    assert adapter.parse(frame("subscribe_ack"), RECV_NS) == Subscribed(None, (), None)


def test_unsubscribe_ack_and_ids_grow() -> None:
    adapter = BinanceAdapter(FUTURES)
    adapter.subscribe("aggTrade", ["BTCUSDT"])
    cmd = orjson.loads(adapter.unsubscribe("depth@250ms", ["BTCUSDT"]))
    assert cmd == {"method": "UNSUBSCRIBE", "params": ["btcusdt@depth"], "id": 2}
    assert adapter.parse(b'{"result":null,"id":2}', RECV_NS) == Unsubscribed(
        "depth@250ms", ("BTCUSDT",)
    )


def test_error_replies_flat_and_nested() -> None:
    adapter = BinanceAdapter()
    adapter.subscribe("trade", ["BTCUSDT"])
    expected = VenueRejected(
        "SUBSCRIBE", 2, "Invalid request: unknown variable", "trade", ("BTCUSDT",), False
    )
    assert adapter.parse(frame("error_invalid_request"), RECV_NS) == expected
    nested = b'{"error":{"code":3,"msg":"Invalid JSON"},"id":9}'
    assert adapter.parse(nested, RECV_NS) == VenueRejected(
        "unknown", 3, "Invalid JSON", None, (), False
    )


def test_ping_is_none_and_urls() -> None:
    adapter = BinanceAdapter()
    assert adapter.ping() is None
    assert adapter.url("ws://127.0.0.1:9000", None) == "ws://127.0.0.1:9000/stream"
    assert adapter.url("", None) == "wss://stream.binance.com:9443/stream"
    assert adapter.redacted_url("wss://u:secret@h:1/x?y=1") == "wss://h:1/stream"
    assert BinanceAdapter(FUTURES).url("", None) == "wss://fstream.binance.com/stream"


# -- malformed ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("[1]", "expected object at $, got array"),
        ('{"x":1}', "expected a combined-stream push or a command reply at $"),
        ('{"stream":1,"data":{}}', "expected str at $.stream, got int 1"),
        (
            '{"stream":"BTCUSDT@trade","data":{}}',
            "expected <lowercase symbol>@<type> at $.stream, got 'BTCUSDT@trade'",
        ),
        (
            '{"stream":"btcusdt@depth@250ms","data":{}}',
            "unknown stream type 'depth@250ms' at $.stream for binance",
        ),
        (
            '{"stream":"btcusdt@kline_1s","data":{}}',
            "unknown stream type 'kline_1s' at $.stream for binance-futures",
        ),
        ('{"stream":"btcusdt@trade","data":[]}', "expected object at $.data, got array"),
        (
            '{"stream":"btcusdt@trade","data":{"s":"ETHUSDT"}}',
            "expected 'BTCUSDT' at $.data.s, got str",
        ),
        (
            '{"stream":"btcusdt@depth@100ms","data":{"s":"BTCUSDT","e":"depthUpdate","U":5,"u":4}}',
            "expected int64 >= $.data.U at $.data.u, got int 4",
        ),
        (
            '{"stream":"btcusdt@depth@100ms","data":{"s":"BTCUSDT","e":"depthUpdate","U":-1,"u":4}}',
            "expected non-negative int64 at $.data.U, got int -1",
        ),
        (
            '{"stream":"btcusdt@depth@100ms","data":{"s":"BTCUSDT","e":"depthUpdate","U":1,"u":4,"b":[["1"]],"a":[]}}',
            "expected [price, quantity] strings at $.data.b[0]",
        ),
        (
            '{"stream":"btcusdt@aggTrade","data":{"s":"BTCUSDT","e":"aggTrade","a":1.5}}',
            "expected non-negative int64 at $.data.a",
        ),
        (
            '{"stream":"btcusdt@kline_1m","data":{"s":"BTCUSDT","e":"kline","k":{"i":"5m"}}}',
            "expected interval '1m' at $.data.k.i",
        ),
        ('{"result":[],"id":1}', "expected result null at $.result for a command reply"),
    ],
)
def test_malformed_reasons(raw: str, reason: str) -> None:
    market = FUTURES if "kline_1s" in raw else SPOT
    assert parse(raw, market) == Malformed(reason)


def test_binary_and_not_json() -> None:
    assert BinanceAdapter().parse(b"{}", RECV_NS, binary=True) == Malformed(
        "expected a text frame, got a binary frame"
    )
    event = parse(b"{nope")
    assert type(event) is Malformed and event.reason.startswith("expected JSON at $: ")


VALID = [p.read_bytes() for p in sorted(FIXTURES.glob("*.json"))]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_truncated_and_bit_flipped_frames_never_raise(valid: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(valid)))
    flip = data.draw(st.integers(0, max(0, cut - 1)))
    raw = bytearray(valid[:cut])
    if raw:
        raw[flip] ^= 1 << data.draw(st.integers(0, 7))
    for market in (SPOT, FUTURES):
        event = BinanceAdapter(market).parse(bytes(raw), RECV_NS)
        if type(event) is Malformed:
            assert 0 < len(event.reason) <= 300


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(raw: bytes) -> None:
    BinanceAdapter().parse(raw, RECV_NS)
    BinanceAdapter().parse_snapshot("depth", "BTCUSDT", raw)


# -- REST snapshots -----------------------------------------------------------------------------
def test_recorded_snapshots_parse_and_line_up_with_the_first_depth_push() -> None:
    adapter = BinanceAdapter()
    first_push: dict[str, Message] = {}
    for raw in recorded_frames():
        event = adapter.parse(raw, RECV_NS)
        if type(event) is Message and event.channel == "depth":
            first_push.setdefault(event.symbol, event)
    for url, body in recorded_snapshots():
        symbol = url.split("symbol=")[1].split("&")[0]
        assert url.endswith(adapter.snapshot_target(symbol, 1000))
        snap = adapter.parse_snapshot("depth", symbol, body)
        assert type(snap) is Snapshot and snap.symbol == symbol
        assert snap.data == orjson.loads(body)
        # Binance's rule for the first push after a snapshot: U <= lastUpdateId + 1 <= u, or
        # (recorded before the snapshot) u <= lastUpdateId: the recording holds both.
        push = first_push[symbol]
        assert push.first_seq is not None and push.first_seq <= snap.seq + 1


def test_snapshot_target_and_weight() -> None:
    spot, fut = BinanceAdapter(), BinanceAdapter(FUTURES)
    assert spot.snapshot_target("btcusdt", 1000) == "/api/v3/depth?symbol=BTCUSDT&limit=1000"
    assert fut.snapshot_target("BTCUSDT", 500) == "/fapi/v1/depth?symbol=BTCUSDT&limit=500"
    assert (spot.snapshot_weight(1000), spot.snapshot_weight(100)) == (50, 5)
    assert (fut.snapshot_weight(1000), fut.snapshot_weight(500)) == (20, 10)


def test_snapshot_malformed() -> None:
    adapter = BinanceAdapter()
    assert adapter.parse_snapshot("depth", "X", b'{"lastUpdateId":"1"}') == Malformed(
        "expected non-negative int64 at $.lastUpdateId, got str"
    )
    assert adapter.parse_snapshot("depth", "X", b'{"lastUpdateId":1,"bids":[],"asks":{}}') == (
        Malformed("expected array at $.asks, got object")
    )


# -- names --------------------------------------------------------------------------------------
def test_channel_names() -> None:
    spot, fut = BinanceAdapter(), BinanceAdapter(FUTURES)
    assert [spot.channel(c) for c in ("depth", "depth@100ms", "depth@1000ms", "kline_1s")] == [
        "depth",
        "depth",
        "depth@1000ms",
        "kline_1s",
    ]
    assert [fut.channel(c) for c in ("depth@1000ms", "kline_1s", "depth@500ms")] == [
        None,
        None,
        "depth@500ms",
    ]
    assert spot.stream_name("depth@1000ms", "BTCUSDT") == "btcusdt@depth"
    assert [spot.sequenced(c) for c in ("depth", "aggTrade", "trade", "bookTicker")] == [
        True,
        True,
        True,
        False,
    ]
    assert not fut.sequenced("trade")
    assert "kline_<interval>" in channels_help(SPOT)
    assert validate_symbol("btcusdt") is None and validate_symbol("BTC USDT") is not None
