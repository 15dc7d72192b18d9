"""The OKX, Bybit, Coinbase and Kraken parsers never raise, whatever the bytes.

Each adapter's ``parse`` and the Kraken book checker are fed the real fixture frames mutated
(bit flips, cuts, inserted JSON punctuation, swapped numbers) and arbitrary bytes; every
result must be a known event with the invariants the pipeline relies on (a ``Malformed``
reason short enough to log, seqs and times within SQLite's INTEGER).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed.derive.kraken_book import BookCheck, KrakenBooks
from fastfeed.venues.bybit import BybitAdapter, Category
from fastfeed.venues.coinbase import CoinbaseAdapter
from fastfeed.venues.events import (
    Malformed,
    Message,
    Pong,
    Subscribed,
    Unsubscribed,
    VenueRejected,
)
from fastfeed.venues.kraken import KrakenAdapter
from fastfeed.venues.okx import OkxAdapter

FIXTURES = Path(__file__).parent.parent / "fixtures"
SEEDS = sorted(
    p.read_bytes().strip()
    for venue in ("okx", "bybit", "coinbase", "kraken")
    for p in (FIXTURES / venue).glob("*.json")
)
INT64 = range(-(2**63), 2**63)
MAX_REASON = 300


def check(event: object) -> None:
    if type(event) is Message:
        assert event.symbol and event.channel
        assert event.seq is None or 0 <= event.seq < 2**63
        assert event.first_seq is None or 0 <= event.first_seq <= (event.seq or 0)
        assert event.ts_ms is None or event.ts_ms in INT64
    elif type(event) is Malformed:
        assert 0 < len(event.reason) <= MAX_REASON, event.reason
    else:
        assert type(event) in (Pong, Subscribed, Unsubscribed, VenueRejected), event


def parse_everywhere(raw: bytes) -> None:
    adapters = [
        OkxAdapter(),
        BybitAdapter(),
        BybitAdapter(Category.LINEAR),
        CoinbaseAdapter(),
        KrakenAdapter(),
    ]
    for adapter in adapters:
        check(adapter.parse(raw, 0))
        check(adapter.parse(raw, 0, binary=True))
    books = KrakenBooks(lambda symbol: 10)
    books.apply((FIXTURES / "kraken" / "book_snapshot.json").read_bytes())
    for result in books.apply(raw):
        assert type(result.check) is BookCheck


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_frames(seed: bytes, data: st.DataObject) -> None:
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "delete", "number"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if how == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "cut":
            del raw[at:]
        elif how == "insert":
            pieces = [b'"', b",", b"{}", b"[]", b"]", b"-1", b"1e400", b"null", b"\\u00b2", b"\xb2"]
            raw[at:at] = data.draw(st.sampled_from(pieces))
        elif how == "number" and raw and 48 <= raw[at] <= 57:
            raw[at : at + 1] = str(data.draw(st.integers(-(2**70), 2**70))).encode()
        elif raw:
            del raw[at]
    parse_everywhere(bytes(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    parse_everywhere(raw)


def test_unicode_digits_are_not_numbers() -> None:
    """str.isdigit() says yes to '²'; int() then raises: the parsers must not ask it alone."""
    okx = OkxAdapter()
    check(okx.parse('{"event":"error","code":"²","msg":"x"}'.encode(), 0))
    trades = (FIXTURES / "okx" / "trades_push.json").read_text()
    event = okx.parse(trades.replace("1630048897897", "\u0661\u0662").encode(), 0)
    assert event == Malformed("expected a millisecond time string at $.data[-1].ts")
    books = KrakenBooks(lambda s: 10)
    books.apply((FIXTURES / "kraken" / "book_snapshot.json").read_bytes())
    doc = (FIXTURES / "kraken" / "book_update.json").read_text()
    (result,) = books.apply(doc.replace("6597.51731160", '"\u0661"'))
    assert result.check is BookCheck.MALFORMED
    assert KrakenAdapter().channel("book-²") is None
