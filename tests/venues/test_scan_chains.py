"""The OKX, Bybit and Coinbase C scanners agree with their Python adapters; Kraken's declines.

As for Binance (``test_scan_binance.py``): each ``scan_<venue>.h`` is compiled into a test-only
shim called through ctypes, then run differentially against the venue's adapter on the real
fixtures, hand-made declines and random mutations. The contract (``scan.h``): a scan that does
not decline says exactly what the adapter says.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed.venues.bybit import BybitAdapter, Category
from fastfeed.venues.coinbase import CoinbaseAdapter
from fastfeed.venues.events import Message
from fastfeed.venues.okx import OkxAdapter
from tests.fixture_venue.chains import BybitFrames, CoinbaseFrames, OkxFrames, Plan
from tests.venues.c_shim import compile_shim

FIXTURES = Path(__file__).parent.parent / "fixtures"

SHIM = r"""
#include "scan_okx.h"
#include "scan_bybit.h"
#include "scan_coinbase.h"
#include "scan_kraken.h"
static int (*const scanners[])(const char *, size_t, ff_scan_t *) = {
    ff_scan_okx, ff_scan_bybit, ff_scan_coinbase, ff_scan_kraken};
int scan(int venue, const char *buf, size_t n, int64_t *seqs, size_t *key)
{
    ff_scan_t out;
    int rc = scanners[venue](buf, n, &out);
    if (rc == FF_SCAN_DATA) {
        seqs[0] = out.first; seqs[1] = out.last; seqs[2] = out.prev;
        key[0] = (size_t)(out.key1 - buf); key[1] = out.key1_len;
        key[2] = out.key2_len ? (size_t)(out.key2 - buf) : 0; key[3] = out.key2_len;
    }
    return rc;
}
"""
OKX, BYBIT, COINBASE, KRAKEN = range(4)
Scan = tuple[str, str, int, int, int] | None  # (key1, key2, first, last, prev)


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ctypes.CDLL]:
    yield compile_shim(tmp_path_factory.mktemp("scan"), SHIM)


def scan(lib: ctypes.CDLL, venue: int, raw: bytes) -> Scan:
    seqs = (ctypes.c_int64 * 3)()
    key = (ctypes.c_size_t * 4)()
    if lib.scan(venue, raw, ctypes.c_size_t(len(raw)), seqs, key) == 0:
        return None
    key1 = raw[key[0] : key[0] + key[1]].decode()
    key2 = raw[key[2] : key[2] + key[3]].decode()
    return key1, key2, seqs[0], seqs[1], seqs[2]


def _okx(raw: bytes, got: tuple[str, str, int, int, int]) -> None:
    event = OkxAdapter().parse(raw, 0)
    assert type(event) is Message, (raw, event)
    key1, key2, first, last, prev = got
    assert (key1, key2) == (event.channel, event.symbol) == ("books", event.symbol)
    assert (first, last, prev) == (event.first_seq, event.seq, first - 1)


def _bybit(raw: bytes, got: tuple[str, str, int, int, int]) -> None:
    for category in Category:
        event = BybitAdapter(category).parse(raw, 0)
        assert type(event) is Message, (raw, event)
        key1, key2, first, last, prev = got
        assert (key1, key2) == (f"{event.channel}.{event.symbol}", "")
        assert (first, last, prev) == (event.seq, event.seq, -1)
        assert event.data["type"] == "delta"


def _coinbase(raw: bytes, got: tuple[str, str, int, int, int]) -> None:
    event = CoinbaseAdapter().parse(raw, 0)
    assert type(event) is Message and event.channel == "level2", (raw, event)
    assert got == ("sequence_num", "", event.seq, event.seq, -1)


AGREE: dict[int, Callable[[bytes, tuple[str, str, int, int, int]], None]] = {
    OKX: _okx,
    BYBIT: _bybit,
    COINBASE: _coinbase,
}


def check_agrees(lib: ctypes.CDLL, venue: int, raw: bytes) -> Scan:
    got = scan(lib, venue, raw)
    if got is not None:
        AGREE[venue](raw, got)
    return got


def fixture(venue: str, name: str) -> bytes:
    return (FIXTURES / venue / f"{name}.json").read_bytes().strip()


OKX_UPDATE = fixture("okx", "books_update")
BYBIT_DELTA = fixture("bybit", "orderbook_delta")
COINBASE_UPDATE = fixture("coinbase", "level2_update")


def test_real_updates_are_scanned(lib: ctypes.CDLL) -> None:
    assert check_agrees(lib, OKX, OKX_UPDATE) == ("books", "BTC-USDT", 123457, 123457, 123456)
    assert check_agrees(lib, BYBIT, BYBIT_DELTA) == (
        "orderbook.1.BTCUSDT",
        "",
        123456790,
        123456790,
        -1,
    )
    assert check_agrees(lib, COINBASE, COINBASE_UPDATE) == ("sequence_num", "", 1, 1, -1)


@pytest.mark.parametrize(
    ("venue", "name"),
    [
        ("okx", "books_snapshot"),
        ("okx", "trades_push"),
        ("okx", "bbo-tbt_push"),
        ("okx", "subscribe_ack"),
        ("bybit", "orderbook_snapshot"),
        ("bybit", "publicTrade_push"),
        ("bybit", "subscribe_ack"),
        ("coinbase", "level2_snapshot"),
        ("coinbase", "heartbeats_push"),
        ("coinbase", "market_trades_push"),
        ("coinbase", "subscriptions_ack"),
    ],
)
def test_everything_else_is_declined(lib: ctypes.CDLL, venue: str, name: str) -> None:
    index = {"okx": OKX, "bybit": BYBIT, "coinbase": COINBASE}[venue]
    assert scan(lib, index, fixture(venue, name)) is None


@pytest.mark.parametrize(
    ("venue", "old", "new"),
    [
        (OKX, b'"prevSeqId":123456', b'"prevSeqId":123457'),  # keepalive-shaped
        (OKX, b'"seqId":123457', b'"seqId":5'),  # sequence reset
        (OKX, b'"ts":"1597026383085"', b'"ts":"15970263830851234567"'),
        (OKX, b'"checksum":-855196043', b'"checksum":1.5'),
        (OKX, b"}]}", b"},{}]}"),
        (BYBIT, b'"u":123456790', b'"u":1'),  # a service restart
        (BYBIT, b"orderbook.1.", b"orderbook.25."),
        (BYBIT, b'"s":"BTCUSDT"', b'"s":"ETHUSDT"'),
        (BYBIT, b'"type":"delta"', b'"type":"delta","type":"delta"'),
        (COINBASE, b"14:30:01.456789Z", b"14:30:01Z"),
        (COINBASE, b"2026-04-07", b"2026-02-30"),
        (COINBASE, b'"type":"update"', b'"type":"snapshot"'),
        (COINBASE, b'"product_id":"BTC-USD"', b'"product_id":""'),
    ],
)
def test_declines(lib: ctypes.CDLL, venue: int, old: bytes, new: bytes) -> None:
    seed = {OKX: OKX_UPDATE, BYBIT: BYBIT_DELTA, COINBASE: COINBASE_UPDATE}[venue]
    raw = seed.replace(old, new, 1)
    assert raw != seed
    assert scan(lib, venue, raw) is None


def test_kraken_declines_every_frame(lib: ctypes.CDLL) -> None:
    for path in sorted((FIXTURES / "kraken").glob("*.json")):
        assert scan(lib, KRAKEN, path.read_bytes().strip()) is None


SEEDS = [(OKX, OKX_UPDATE), (BYBIT, BYBIT_DELTA), (COINBASE, COINBASE_UPDATE)]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(SEEDS), st.data())
def test_mutations_never_disagree(
    lib: ctypes.CDLL, seed: tuple[int, bytes], data: st.DataObject
) -> None:
    venue, raw0 = seed
    raw = bytearray(raw0)
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "delete", "digit"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if how == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "cut":
            del raw[at:]
        elif how == "insert":
            raw[at:at] = data.draw(
                st.sampled_from([b'"', b",", b"}", b"]", b"9", b"-", b"\\", b"."])
            )
        elif how == "digit" and raw and 48 <= raw[at] <= 57:
            raw[at] = data.draw(st.integers(48, 57))
        elif raw:
            del raw[at]
    check_agrees(lib, venue, bytes(raw))


def test_every_frame_the_fixture_venues_serve(lib: ctypes.CDLL) -> None:
    """Renumbered real-shaped streams: every update scanned, everything else declined."""
    plan = Plan(updates=40, keepalive={5, 17}, reset={23})
    for venue, protocol in (
        (OKX, OkxFrames()),
        (BYBIT, BybitFrames()),
        (COINBASE, CoinbaseFrames()),
    ):
        updates = protocol.stream("BTC-USD", plan)
        scanned = [u for u in updates if check_agrees(lib, venue, u.frame) is not None]
        # Scanned: exactly the numbered updates (not snapshots, keepalives or resets).
        assert [u.index for u in scanned] == [u.index for u in updates if u.ids is not None]
        for update in scanned:
            got = scan(lib, venue, update.frame)
            assert got is not None and update.ids == (got[2], got[3])
