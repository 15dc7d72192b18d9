"""Kraken v2 ``book`` loss detection: each symbol's book kept with exact decimal strings, its
CRC32 checked after every message, and a crossed book flagged. Sans-I/O, and off the per-frame
path: it re-reads the recorded frame text in the derived (batch) part.

Kraken sends no sequence numbers; a lost message shows as the first checksum that disagrees
(Kraken, "Book checksum (WebSocket v2)"):

* apply every level of a message (``qty`` 0 removes the level), then truncate each side to the
  subscribed depth (levels that fall out of scope get no ``qty`` 0);
* over the top 10 asks (price low to high) then the top 10 bids (high to low), take each
  ``price`` and ``qty`` as the exact decimal text on the wire, remove the ``.`` and the
  leading zeros, concatenate, and CRC32 the string; it must equal ``checksum``.

Floats would lose trailing zeros (``0.10000000``) and break the checksum, so numbers are read
as their JSON text. After a mismatch or a crossed book the symbol waits for a new snapshot
(the recovery resubscribes); updates until then are ``UNSYNCED`` and not counted again.
"""

from __future__ import annotations

import enum
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["CHECKSUM_LEVELS", "BookCheck", "KrakenBooks", "checksum"]

CHECKSUM_LEVELS = 10  # Kraken: the checksum covers the top 10 levels whatever the depth


class BookCheck(enum.StrEnum):
    """What one book message did to its symbol's book."""

    OK = "ok"
    MISMATCH = "checksum mismatch"  # a message was lost (or corrupted): resubscribe
    CROSSED = "crossed book"  # best bid >= best ask after applying it: resubscribe
    UNSYNCED = "unsynced"  # an update with no good book to apply it to
    MALFORMED = "malformed"  # not a book message this checker can read


@dataclass(frozen=True, slots=True)
class BookResult:
    """The check of one message: per symbol it carried, the outcome and the checksums."""

    symbol: str
    check: BookCheck
    expected: int | None = None
    computed: int | None = None


# A level is (price as Decimal for ordering, price text, qty text).
_Side = dict[Decimal, tuple[str, str]]


def _strip(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def checksum(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """CRC32 of the top levels given best first, as Kraken defines it."""
    parts = [_strip(p) + _strip(q) for p, q in asks[:CHECKSUM_LEVELS]]
    parts += [_strip(p) + _strip(q) for p, q in bids[:CHECKSUM_LEVELS]]
    return zlib.crc32("".join(parts).encode("ascii"))


class _Book:
    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.asks: _Side = {}
        self.bids: _Side = {}

    def best(self, side: _Side, reverse: bool) -> list[tuple[str, str]]:
        keys = sorted(side, reverse=reverse)[:CHECKSUM_LEVELS]
        return [side[k] for k in keys]

    def truncate(self, depth: int) -> None:
        for side, reverse in ((self.asks, False), (self.bids, True)):
            if len(side) > depth:
                for k in sorted(side, reverse=reverse)[depth:]:
                    del side[k]


def _read_text_numbers(frame: bytes | str) -> Any:
    """Parse JSON keeping every number as its exact text."""
    return json.loads(frame, parse_float=str, parse_int=str)


class KrakenBooks:
    """Every subscribed symbol's book of one connection, checked message by message."""

    def __init__(self, depth_of: Callable[[str], int]) -> None:
        """``depth_of(symbol)``: the depth that symbol was subscribed at (10..1000)."""
        self._depth_of = depth_of
        self._books: dict[str, _Book] = {}

    def apply(self, frame: bytes | str) -> list[BookResult]:
        """Apply one ``book`` frame; one result per symbol entry it holds. Never raises."""
        try:
            doc = _read_text_numbers(frame)
        except ValueError:
            return [BookResult("", BookCheck.MALFORMED)]
        if type(doc) is not dict or doc.get("channel") != "book":
            return [BookResult("", BookCheck.MALFORMED)]
        kind = doc.get("type")
        entries = doc.get("data")
        if kind not in ("snapshot", "update") or type(entries) is not list:
            return [BookResult("", BookCheck.MALFORMED)]
        return [self._entry(kind == "snapshot", entry) for entry in entries]

    def _entry(self, snapshot: bool, entry: object) -> BookResult:
        if type(entry) is not dict or type(entry.get("symbol")) is not str:
            return BookResult("", BookCheck.MALFORMED)
        symbol: str = entry["symbol"]
        try:
            expected = int(entry["checksum"])
            asks = _levels(entry.get("asks"))
            bids = _levels(entry.get("bids"))
        except (KeyError, TypeError, ValueError, InvalidOperation):
            self._books.pop(symbol, None)
            return BookResult(symbol, BookCheck.MALFORMED)
        if snapshot:
            book = self._books[symbol] = _Book()
        elif (found := self._books.get(symbol)) is None:
            return BookResult(symbol, BookCheck.UNSYNCED, expected)
        else:
            book = found
        # Levels in message order: a later entry for the same price is the newer one.
        for side, levels in ((book.asks, asks), (book.bids, bids)):
            for key, price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(key, None)
                else:
                    side[key] = (price, qty)
        book.truncate(self._depth_of(symbol))
        best_asks = book.best(book.asks, False)
        best_bids = book.best(book.bids, True)
        computed = checksum(best_asks, best_bids)
        if computed != expected:
            del self._books[symbol]
            return BookResult(symbol, BookCheck.MISMATCH, expected, computed)
        if best_asks and best_bids and Decimal(best_bids[0][0]) >= Decimal(best_asks[0][0]):
            del self._books[symbol]
            return BookResult(symbol, BookCheck.CROSSED, expected, computed)
        return BookResult(symbol, BookCheck.OK, expected, computed)


def _levels(raw: object) -> list[tuple[Decimal, str, str]]:
    """``[{"price": text, "qty": text}, ...]`` as (price key, price text, qty text)."""
    if type(raw) is not list:
        raise TypeError("expected an array of levels")
    out = []
    for level in raw:
        price, qty = level["price"], level["qty"]
        if type(price) is not str or type(qty) is not str or not (price + qty).isascii():
            raise TypeError("expected numbers for price and qty")
        key = Decimal(price)
        if not key.is_finite() or not Decimal(qty).is_finite():
            raise ValueError("expected finite numbers")
        out.append((key, price, qty))
    return out
