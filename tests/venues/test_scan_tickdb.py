"""The C scanner against the Python adapter: they agree on (channel, symbol, seq) or it declines.

The contract (``check_scan``) is shared with the atheris harness fuzz/fuzz_scanner.py. The
scanner only lets the recorder skip Python for a frame; the adapter stays the authority on
what a frame means, so a scanner that declines is always right and one that answers must
answer exactly what the adapter reads.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastfeed.recorder._sink import Scanner, StreamTable, scanner_venues
from fastfeed.sim.content import StreamGenerator, stamp
from fastfeed.venues.events import Message
from fastfeed.venues.tickdb import CHANNELS, TickDBAdapter

__all__ = ["check_scan"]

FIXTURES = Path(__file__).parent.parent / "fixtures"
TICKDB_FRAMES = sorted(p.read_bytes().strip() for p in (FIXTURES / "tickdb").glob("*.json"))
RECORDED = [
    line.split(b": ", 1)[1]
    for path in sorted((FIXTURES / "recorded").glob("*.*.*"))
    for line in path.read_bytes().splitlines()
    if b": " in line
]
SCANNER = Scanner("tickdb")
ADAPTER = TickDBAdapter()


def check_scan(payload: bytes) -> bool:
    """Scanner and adapter agree on ``payload``; returns whether the scanner answered.

    Raises:
        AssertionError: the scanner answered something the adapter does not read the same way.
    """
    spans = SCANNER.spans(payload)
    found = SCANNER.key_seq(payload)
    if spans is None:
        assert found is None
        return False
    channel, symbol, first, last, prev = spans
    event = ADAPTER.parse(payload, 0)
    assert type(event) is Message, (payload, event)
    assert (event.channel, event.symbol) == (channel.decode(), symbol.decode())
    assert event.seq == first == last and prev == -1
    assert found == (channel + b"\x00" + symbol, event.seq)
    return True


def generated(channel: str, symbol: str, count: int) -> list[bytes]:
    gen = StreamGenerator(7, channel, symbol)
    return [gen.next() for _ in range(count)]


def test_the_tickdb_venue_has_a_scanner() -> None:
    assert "tickdb" in scanner_venues()


def test_fixture_pushes_with_a_seq_are_read_the_rest_declined() -> None:
    answered = [frame for frame in TICKDB_FRAMES if check_scan(frame)]
    # Pushes without a seq (plain TickDB), acks, errors and pongs all go to the adapter.
    assert answered == [f for f in TICKDB_FRAMES if b'"seq"' in f and b'"code"' not in f]
    assert answered


def test_other_venues_recorded_frames_are_all_declined() -> None:
    assert len(RECORDED) > 50
    assert not any(check_scan(frame) for frame in RECORDED)


def test_simulator_frames_of_every_channel_are_read() -> None:
    for channel in CHANNELS:
        for frame in generated(channel, "BTC/USD:X", 50):
            assert check_scan(frame), frame
            assert check_scan(stamp(frame, 1_732_406_400_123_456_789))


def test_plain_simulator_frames_are_declined() -> None:
    gen = StreamGenerator(7, "depth", "AAPL.US", plain=True)
    assert not check_scan(gen.next())


def trade(**fields: object) -> dict[str, object]:
    data: dict[str, object] = {"symbol": "A", "price": "1", "quantity": "2", "side": "b"}
    data["timestamp"] = 1
    data.update(fields)
    return data


def book(bids: object) -> dict[str, object]:
    return {"symbol": "A", "bids": bids, "asks": [], "timestamp": 1}


def push(**top: object) -> bytes:
    doc: dict[str, object] = {"cmd": "trade", "seq": 5}
    doc["data"] = {"symbol": "A", "price": "1", "quantity": "2", "side": "buy", "timestamp": 1}
    doc.update(top)
    return json.dumps(doc).encode()


def test_what_the_adapter_refuses_is_declined() -> None:
    cases = [
        push(seq=0),
        push(seq=2**63),
        push(seq=None),
        push(seq=1.0),
        push(seq=True),
        push(code=0),
        push(sent_ns=-1),
        push(cmd="quote"),
        push(data={"symbol": "A", "price": 1, "quantity": "2", "side": "b", "timestamp": 1}),
        push(
            data={"symbol": "bad sym", "price": "1", "quantity": "2", "side": "b", "timestamp": 1}
        ),
        push(data={"symbol": "A", "price": "1", "quantity": "2", "side": "b", "timestamp": 2**63}),
        push(data={"symbol": "A", "price": "1", "quantity": "2", "side": "b"}),
        push(
            cmd="depth", data={"symbol": "A", "bids": [["1", "2", "3"]], "asks": [], "timestamp": 1}
        ),
        push(cmd="depth", data={"symbol": "A", "bids": [[1, "2"]], "asks": [], "timestamp": 1}),
    ]
    for frame in cases:
        assert not check_scan(frame), frame


def test_strings_escapes_duplicates_and_bytes_it_does_not_interpret_are_declined() -> None:
    good = push()
    assert check_scan(good)
    cases = [
        good.replace(b'"side": "buy"', b'"side": "b\\"uy"'),  # escaped quote
        good.replace(b'"side": "buy"', b'"side": "b\\u0075y"'),  # unicode escape
        good.replace(b'"side": "buy"', b'"side": "b\xc3\xa9"'),  # non-ASCII (valid UTF-8)
        good.replace(b'"side": "buy"', b'"side": "b\xff"'),  # not UTF-8
        good.replace(b'{"cmd"', b'{"seq": 6, "cmd"'),  # duplicate key
        good.replace(b'"symbol": "A"', b'"symbol": "A", "symbol": "B"'),
        good[:-1],  # truncated
        good + b"x",  # trailing garbage
        b"[" + good + b"]",
    ]
    for frame in cases:
        assert not check_scan(frame), frame
    # A key spelled inside a string value is only a string: the real keys decide.
    inside = good.replace(b'"side": "buy"', b'"side": "\\"seq\\": 99"')
    assert not check_scan(inside)
    decoy = push(note='"seq": 99, "cmd": "depth"'.replace('"', "'"))
    assert check_scan(decoy) and SCANNER.spans(decoy) == (b"trade", b"A", 5, 5, -1)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = [f for f in TICKDB_FRAMES if SCANNER.spans(f) is not None] + generated("depth", "X", 3)


@FUZZ
@given(st.sampled_from(VALID + RECORDED[:20]), st.data())
def test_truncated_and_bit_flipped_frames_agree_or_decline(
    frame: bytes, data: st.DataObject
) -> None:
    damaged = bytearray(frame[: data.draw(st.integers(0, len(frame)))])
    for bit in data.draw(st.lists(st.integers(0, max(len(damaged) * 8 - 1, 0)), max_size=4)):
        if damaged:
            damaged[bit // 8] ^= 1 << (bit % 8)
    check_scan(bytes(damaged))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
fields = st.sampled_from(["cmd", "seq", "sent_ns", "data", "code", "symbol", "timestamp", "bids"])


@FUZZ
@given(st.sampled_from(VALID), st.lists(st.tuples(fields, json_values), max_size=3), st.booleans())
def test_valid_frames_with_hostile_fields_agree_or_decline(
    frame: bytes, changes: list[tuple[str, object]], in_data: bool
) -> None:
    doc = json.loads(frame)
    target = doc["data"] if in_data else doc
    for key, value in changes:
        target[key] = value
    check_scan(json.dumps(doc).encode())
    check_scan(json.dumps(doc, separators=(",", ":")).encode())


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_agree_or_decline(payload: bytes) -> None:
    check_scan(payload)


def test_stream_table_holds_1000_streams_and_refuses_past_capacity() -> None:
    table = StreamTable()
    keys = [b"depth\x00SYM%d" % i for i in range(1000)]
    for i, key in enumerate(keys):
        assert table.register(key, i)
    assert table.size == 1000 and all(table.last(k) == i for i, k in enumerate(keys))
    assert table.last(b"depth\x00NOPE") is None
    # Past its capacity it refuses new streams (their frames keep going to Python).
    full = StreamTable(capacity=2)
    assert full.register(b"a", 1) and full.register(b"b", 1) and not full.register(b"c", 1)
    assert full.register(b"a", 9) and full.last(b"a") == 9
