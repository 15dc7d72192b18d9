"""The Binance C scanner agrees with the Python adapter on every frame it does not decline.

The scanner is compiled here into a tiny shared library (a test-only shim around
``scan_binance.h``) and called through ctypes, then run differentially against
``BinanceAdapter`` on the recorded spot session, the futures example and mutations of both.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed.recorder._sink import Scanner, scanner_venues
from fastfeed.venues.binance import BinanceAdapter, Market
from fastfeed.venues.events import Malformed, Message
from tests.venues.c_shim import compile_shim

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance"

SHIM = r"""
#include "scan_binance.h"
int scan(const char *buf, size_t n, int futures, int64_t *seqs, size_t *key)
{
    ff_scan_t out;
    int rc = futures ? ff_scan_binance_futures(buf, n, &out) : ff_scan_binance(buf, n, &out);
    if (rc == FF_SCAN_DATA) {
        seqs[0] = out.first; seqs[1] = out.last; seqs[2] = out.prev;
        key[0] = (size_t)(out.key1 - buf); key[1] = out.key1_len; key[2] = out.key2_len;
    }
    return rc;
}
"""

Scan = tuple[str, int, int, int] | None  # (key, first, last, prev) or None when declined


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ctypes.CDLL]:
    yield compile_shim(tmp_path_factory.mktemp("scan"), SHIM)


def scan(lib: ctypes.CDLL, raw: bytes, market: Market) -> Scan:
    seqs = (ctypes.c_int64 * 3)()
    key = (ctypes.c_size_t * 3)()
    rc = lib.scan(raw, ctypes.c_size_t(len(raw)), int(market is Market.FUTURES), seqs, key)
    if rc == 0:
        return None
    assert rc == 1 and key[2] == 0
    return raw[key[0] : key[0] + key[1]].decode(), seqs[0], seqs[1], seqs[2]


def check_agrees(lib: ctypes.CDLL, raw: bytes, market: Market) -> Scan:
    """The contract: a scan that does not decline says what the adapter says."""
    got = scan(lib, raw, market)
    if got is None:
        return None
    event = BinanceAdapter(market).parse(raw, 0)
    if type(event) is Malformed:
        # Only a stream the adapter never registers may be scanned yet unreadable to it.
        assert event.reason.startswith("unknown stream type"), (raw, event)
        return got
    assert type(event) is Message, (raw, event)
    key, first, last, prev = got
    assert key == orjson.loads(raw)["stream"]
    assert last == event.seq
    if market is Market.FUTURES:
        assert prev >= 0 and prev + 1 == event.first_seq and first == event.data["U"]
    else:
        assert prev == -1 and first == event.first_seq
    return got


def recorded_frames() -> list[bytes]:
    lines = (FIXTURES / "spot_recorded.ws").read_bytes().splitlines()
    return [ln.split(b": ", 1)[1] for ln in lines if ln and not ln.startswith(b"wss://")]


FUTURES_FRAME = (FIXTURES / "depth_push_futures.json").read_bytes().strip()


def test_every_recorded_depth_push_is_scanned_and_nothing_else(scanner: ctypes.CDLL) -> None:
    scanned = 0
    for raw in recorded_frames():
        got = check_agrees(scanner, raw, Market.SPOT)
        assert (got is not None) == (b"@depth" in raw[:40]), raw
        scanned += got is not None
    assert scanned == 177


def test_futures_push_and_market_mismatch(scanner: ctypes.CDLL) -> None:
    assert check_agrees(scanner, FUTURES_FRAME, Market.FUTURES) == (
        "btcusdt@depth@100ms",
        157,
        160,
        149,
    )
    assert scan(scanner, FUTURES_FRAME, Market.SPOT) is None  # pu on spot: declined
    spot = recorded_frames()[0]
    assert scan(scanner, spot, Market.FUTURES) is None  # no pu on futures: declined


GOOD = b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"NKNUSDT",'
GOOD += b'"U":4,"u":4,"b":[["1","2"]],"a":[]}}'


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (GOOD, b'{"result":null,"id":1}'),
        (b'"U":4', b'"U":5'),
        (b'"s":"NKNUSDT"', b'"s":"nknusdt"'),
        (b'"u":4', b'"u":4,"u":5'),
        (b"}}", b"}} "),
        (b'"u":4', b'"u":4.0'),
        (b'"u":4', b'"u":1234567890123456789'),
        (b'"1"', b'"1\\u0030"'),
        (b'"2"]', b'"2","3"]'),
        (b'"E":1,', b""),
        (b"@depth@100ms", b"@trade"),
        (b'"E":1', b'"E":-1'),
        (b'"E":1', b'"E":01'),
        (b'"b":', b'"b" :'),
    ],
    ids=[
        "ack",
        "U>u",
        "symbol case",
        "repeated u",
        "trailing space",
        "float",
        "19 digits",
        "escape",
        "three-item level",
        "no E",
        "not depth",
        "negative",
        "leading zero",
        "whitespace",
    ],
)
def test_declines(scanner: ctypes.CDLL, old: bytes, new: bytes) -> None:
    assert check_agrees(scanner, GOOD, Market.SPOT) is not None
    raw = GOOD.replace(old, new, 1)
    assert raw != GOOD
    assert scan(scanner, raw, Market.SPOT) is None


SEEDS = [*recorded_frames()[:40], FUTURES_FRAME]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(SEEDS), st.data())
def test_mutations_never_disagree(scanner: ctypes.CDLL, seed: bytes, data: st.DataObject) -> None:
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if how == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "cut":
            del raw[at:]
        elif how == "insert":
            raw[at:at] = data.draw(st.sampled_from([b'"', b",", b"}", b"]", b"9", b"-", b"\\"]))
        elif raw:
            del raw[at]
    for market in (Market.SPOT, Market.FUTURES):
        check_agrees(scanner, bytes(raw), market)


def test_the_sink_runs_the_same_scanner_per_market(scanner: ctypes.CDLL) -> None:
    """The recorder's Cython sink registers these scanners under the adapters' names."""
    assert {"binance", "binance-futures"} <= set(scanner_venues())
    scanned = 0
    for market, frames in ((Market.SPOT, SEEDS[:-1]), (Market.FUTURES, [FUTURES_FRAME])):
        sink_scanner = Scanner(BinanceAdapter(market).name)
        for raw in frames:
            want = scan(scanner, raw, market)
            got = sink_scanner.spans(raw)
            if want is None:
                assert got is None, raw
                continue
            assert got is not None
            key1, key2, first, last, prev = got
            assert (key1.decode(), first, last, prev) == want and key2 == b""
            scanned += 1
    assert scanned > 2
