"""Kraken's book checksum: every real captured checksum must match before any fault is tried.

Two sources of real checksums: the v2 frames in ``tests/fixtures/kraken/`` (a snapshot and the
update after it, plus the guide's book), and a real v1 recording (``v1_recorded.ws.gz``: 4,269
book-1000 updates over 10 pairs, each with Kraken's checksum ``c``). v1 books use the
same checksum rule (Kraken's v1 and v2 checksum guides) and carry prices and volumes as exact
decimal strings, so each v1 message is rewritten as the v2 frame carrying the same levels as
JSON numbers with the same digits and fed through ``KrakenBooks``: every update's checksum must
match the book the checker keeps. (A v1 snapshot has no checksum: the rewritten snapshot gets
the one computed from its own levels, which the first update then confirms.)
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from fastfeed.derive.kraken_book import BookCheck, BookResult, KrakenBooks, checksum

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kraken"
RECORDED = FIXTURES / "v1_recorded.ws.gz"
V1_DEPTH = 1000


def frame(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().strip()


def test_real_v2_frames_pass() -> None:
    books = KrakenBooks(lambda symbol: 10)
    assert books.apply(frame("book_snapshot")) == [
        BookResult("ALGO/USD", BookCheck.OK, 2375857985, 2375857985)
    ]
    assert books.apply(frame("book_update")) == [
        BookResult("ALGO/USD", BookCheck.OK, 1100635717, 1100635717)
    ]
    assert books.apply(frame("book_snapshot_guide")) == [
        BookResult("BTC/USD", BookCheck.OK, 3310070434, 3310070434)
    ]


def test_floats_would_fail() -> None:
    """The reason for exact text: 4067.00000000 read as a float prints as 4067.0."""
    doc = orjson.loads(frame("book_snapshot"))["data"][0]
    as_floats = [(repr(lv["price"]), repr(lv["qty"])) for lv in doc["asks"]]
    bids = [(repr(lv["price"]), repr(lv["qty"])) for lv in doc["bids"]]
    assert checksum(as_floats, bids) != doc["checksum"]


def _v2(kind: str, symbol: str, asks: list[Any], bids: list[Any], crc: int) -> bytes:
    def side(levels: list[Any]) -> str:
        return ",".join(f'{{"price":{lv[0]},"qty":{lv[1]}}}' for lv in levels)

    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}",'
        f'"bids":[{side(bids)}],"asks":[{side(asks)}],"checksum":{crc}}}]}}'
    ).encode()


def v1_as_v2() -> list[tuple[str, bytes]]:
    """Every v1 book message of the recording as (kind, v2 frame)."""
    out = []
    for line in gzip.decompress(RECORDED.read_bytes()).splitlines():
        _, sep, body = line.partition(b": ")
        if not sep or not body.startswith(b"["):
            continue
        msg = orjson.loads(body)
        pair, parts = msg[-1], [p for p in msg[1:-2] if type(p) is dict]
        if "as" in parts[0] or "bs" in parts[0]:
            asks, bids = parts[0].get("as", []), parts[0].get("bs", [])
            crc = checksum([(p, q) for p, q, _ in asks[:10]], [(p, q) for p, q, _ in bids[:10]])
            out.append(("snapshot", _v2("snapshot", pair, asks, bids, crc)))
            continue
        asks = [lv for p in parts for lv in p.get("a", [])]
        bids = [lv for p in parts for lv in p.get("b", [])]
        crc = int(next(p["c"] for p in parts if "c" in p))
        out.append(("update", _v2("update", pair, asks, bids, crc)))
    return out


def test_every_recorded_v1_checksum_matches() -> None:
    books = KrakenBooks(lambda symbol: V1_DEPTH)
    counts = {check: 0 for check in BookCheck}
    for kind, raw in v1_as_v2():
        (result,) = books.apply(raw)
        assert result.check is BookCheck.OK, (kind, raw[:200], result)
        counts[result.check] += 1
    assert counts[BookCheck.OK] == 4269 + 10  # every update, and the 10 snapshots
