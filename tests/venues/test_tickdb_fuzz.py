"""Bad input through the whole derive path: adapter, pipeline and SQLite never fail on a frame.

The contract (``check_records``) is shared with the coverage-guided harness in fuzz/: any bytes
journaled as any record kind become events or a counted ``Malformed``, the pipeline never
raises, and the batch it cuts is always storable (a frame the store cannot hold is malformed,
not a crash of the snapshotter on every restart).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastfeed.derive.pipeline import FLAG_BINARY, Pipeline
from fastfeed.derive.rest_record import decode_rest
from fastfeed.journal import RecordKind
from fastfeed.store import Store
from fastfeed.venues.events import (
    Malformed,
    Message,
    Pong,
    Subscribed,
    Unsubscribed,
    VenueRejected,
)
from fastfeed.venues.tickdb import CHANNELS, TickDBAdapter, validate_symbol

__all__ = ["check_records"]

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tickdb"
VALID_FRAMES = sorted(p.read_bytes() for p in FIXTURES.glob("*.json"))
INT64 = range(-(2**63), 2**63)
MAX_REASON = 300  # a Malformed reason is logged: a hostile frame must not make it huge

Record = tuple[int, bytes, bool]  # (journal record kind, payload, binary frame)


def check_event(event: object) -> None:
    """One parse result is a known event, with the invariants the pipeline relies on."""
    if type(event) is Message:
        assert event.channel in CHANNELS
        assert validate_symbol(event.symbol) is None
        assert event.data["symbol"] == event.symbol
        assert event.seq is None or 1 <= event.seq < 2**63
        assert event.ts_ms in INT64
        assert event.sent_ns is None or event.sent_ns in INT64
    elif type(event) is Malformed:
        assert 0 < len(event.reason) <= MAX_REASON, event.reason
    elif type(event) is Subscribed:
        for rng in (event.streams or {}).values():
            assert 1 <= rng.first_seq < 2**63 and 0 <= rng.head_seq < 2**63
    else:
        assert type(event) in (Pong, Unsubscribed, VenueRejected), event


def check_records(records: Sequence[Record], store_dir: Path) -> None:
    """Feed ``records`` as a journal would hold them; the batch is committed to a new store.

    Raises:
        AssertionError: the contract broke (any other exception is a bug too).
    """
    oracle = TickDBAdapter()
    pipeline = Pipeline("tickdb", TickDBAdapter())
    malformed = messages = 0
    for lsn, (kind, payload, binary) in enumerate(records, 1):
        if kind == RecordKind.INBOUND:
            event = oracle.parse(payload, lsn, binary=binary)
            check_event(event)
            malformed += type(event) is Malformed
            messages += type(event) is Message
        elif kind == RecordKind.REST:
            # A damaged REST record, or a snapshot body the venue cannot read, is counted.
            decoded = decode_rest(payload)
            malformed += isinstance(decoded, str) or decoded[0].status == 200
        pipeline.feed(lsn, kind, lsn, payload, FLAG_BINARY if binary else 0)
    assert pipeline.malformed == malformed  # every unreadable frame counted, none twice
    batch = pipeline.cut()
    if batch is None:
        assert not records
        return
    # Each message is kept once or counted as a duplicate: nothing vanishes unaccounted.
    assert len(batch.messages) + sum(s.duplicates for s in batch.streams) == messages
    store = Store.open(store_dir / "fastfeed.db", venue="tickdb")
    try:
        store.apply(batch)
        assert store.applied_lsn() == len(records)
    finally:
        store.close()


def run(records: Sequence[Record]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        check_records(records, Path(tmp))


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
kinds = st.sampled_from(list(RecordKind))


@FUZZ
@given(st.lists(st.tuples(kinds, st.binary(max_size=200), st.booleans()), max_size=8))
def test_random_bytes_as_any_record_kind(records: list[Record]) -> None:
    run(records)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(VALID_FRAMES), st.data()), min_size=1, max_size=6))
def test_truncated_and_bit_flipped_frames_are_stored_or_counted(
    frames: list[tuple[bytes, st.DataObject]],
) -> None:
    records: list[Record] = []
    for valid, data in frames:
        damaged = bytearray(valid[: data.draw(st.integers(0, len(valid)))])
        for bit in data.draw(st.lists(st.integers(0, max(len(damaged) * 8 - 1, 0)), max_size=3)):
            if damaged:
                damaged[bit // 8] ^= 1 << (bit % 8)
        records.append((RecordKind.INBOUND, bytes(damaged), False))
    run(records)


# Numbers at and past the 64-bit edges, where JSON, Python and SQLite disagree.
edges = st.sampled_from([0, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -1])
# The edges drawn half the time: plain integer draws rarely land between 2**63 and 2**64.
numbers = st.one_of(edges, edges, edges, st.integers(-(2**65), 2**65), st.floats(), st.none())
symbols = st.sampled_from(["AAPL.US", "BTC.CC", "", "x" * 33, "bad sym", 7])


@st.composite
def shaped_frames(draw: st.DrawFn) -> bytes:
    """Push and ack frames that are valid but for one hostile field value (or error frames)."""
    cmd = draw(st.sampled_from([*CHANNELS, "subscribe", "unsubscribe", "ping", "pong", "error"]))
    if cmd in CHANNELS:
        data = {"symbol": "AAPL.US", "timestamp": 1, "bids": [["1.0", "2"]], "asks": []}
        data |= {"price": "1", "quantity": "1", "side": "b", "last": "1", "volume": "2"}
        doc: dict[str, object] = {"cmd": cmd, "seq": 1, "sent_ns": 1, "data": data}
        field = draw(st.sampled_from(["seq", "sent_ns", "timestamp", "symbol"]))
        value = draw(symbols if field == "symbol" else numbers)
        (data if field in ("timestamp", "symbol") else doc)[field] = value
    else:
        rng = {"first_seq": 1, "head_seq": 0}
        rng[draw(st.sampled_from(["first_seq", "head_seq"]))] = draw(numbers)
        data = {"channel": draw(st.sampled_from(CHANNELS)), "symbols": ["AAPL.US"]}
        data["streams"] = {"AAPL.US": rng}
        doc = {"cmd": cmd, "code": draw(numbers | st.just(0)), "data": data}
    return json.dumps(doc).encode()


@FUZZ
@given(st.lists(shaped_frames(), max_size=10))
def test_hostile_numbers_and_symbols_never_reach_sqlite(frames: list[bytes]) -> None:
    run([(RecordKind.INBOUND, frame, False) for frame in frames])


@st.composite
def sequenced_pushes(draw: st.DrawFn) -> Record:
    seq = draw(st.integers(1, 3000) | st.sampled_from([1, 2, 2**63 - 1]))
    symbol = draw(st.sampled_from(["A", "B"]))
    frame = {"cmd": "trade", "seq": seq, "data": {"symbol": symbol, "price": "1"}}
    frame["data"] |= {"quantity": "1", "side": "buy", "timestamp": seq}  # type: ignore[operator]
    return RecordKind.INBOUND, json.dumps(frame).encode(), False


SUBSCRIBE = b'{"cmd":"subscribe","data":%s}'
connection_records = st.sampled_from(
    [
        (RecordKind.CONNECTION, b'{"event":"connected"}', False),
        (RecordKind.CONNECTION, b'{"event":"disconnected"}', False),
        (RecordKind.OUTBOUND, SUBSCRIBE % b'{"channel":"trade","resume":{"A":5}}', False),
        (RecordKind.OUTBOUND, SUBSCRIBE % b'{"channel":7,"resume":{"A":-3}}', False),
        (RecordKind.OUTBOUND, SUBSCRIBE % b'{"channel":"trade","resume":[1]}', False),
        (RecordKind.CONTROL, b'{"subscriptions":{"trade":[1,{}]},"event":"started"}', False),
    ]
)


@FUZZ
@given(st.lists(sequenced_pushes() | connection_records, max_size=40))
def test_seq_jumps_resets_and_reconnects_are_always_storable(records: list[Record]) -> None:
    run(records)


def test_a_seq_beyond_sqlite_integer_is_malformed_not_a_snapshot_crash() -> None:
    # Found by this contract: seq 2**64 - 1 parsed as a message, then SQLite raised
    # OverflowError on every snapshot, so the recorder died and died again on each restart.
    huge = b'{"cmd":"trade","seq":18446744073709551615,"data":{"symbol":"A","price":"1",'
    huge += b'"quantity":"1","side":"buy","timestamp":1}}'
    assert TickDBAdapter().parse(huge, 0) == Malformed(
        "expected positive int64 at $.seq, got int 18446744073709551615"
    )
    run([(RecordKind.INBOUND, huge, False)])
