"""Loss detectors for venues that chain their messages: OKX ``books``, Bybit order books and
Coinbase Advanced Trade's connection-wide ``sequence_num``. Sans-I/O: ids in, verdicts out.

Every one of them reduces to one rule over a chain of id ranges: a message covering
``prev + 1 .. last`` follows the chain when ``prev`` is the last id seen. The venue rules on top
(snapshots, keepalives, resets) are the small classes below, each citing its venue's docs.

A break opens a *hole*: the ids ``last + 1 .. prev`` that the missing messages covered. A late
message (a reorder) that covers part of a hole fills that part; a message entirely at or below
the last id and in no hole is a duplicate. A snapshot (the venue's recovery) closes every open
hole of its key as lost, extended up to the snapshot's id (the messages between the hole and the
snapshot were never received either); a snapshot with no hole open is a lossless resync (a
planned reconnect). Holes per key are bounded (``MAX_HOLES``): past it the oldest is given up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from fastfeed.venues.events import Message

__all__ = [
    "MAX_HOLES",
    "BybitBooks",
    "Chain",
    "CoinbaseSequence",
    "OkxBooks",
    "Verdict",
    "Verdicts",
]

MAX_HOLES = 64  # open holes kept per key; more means the stream is beyond repair anyway


class Verdict(enum.StrEnum):
    """What one message means for its key's chain."""

    IN_ORDER = "in order"  # continues the chain
    GAP = "gap"  # ids were skipped: ``opened`` holds the hole (recovery: resubscribe)
    LATE = "late"  # a reorder: it fills (part of) an open hole
    DUPLICATE = "duplicate"  # every id it covers was seen already
    SNAPSHOT = "snapshot"  # a full state: the chain restarts at its id
    RESET = "reset"  # the venue restarted its numbering: not a loss
    KEEPALIVE = "keepalive"  # an idle heartbeat in the chain (OKX): no ids covered
    UNSYNCED = "unsynced"  # an update before any snapshot of its key: cannot be placed


@dataclass(frozen=True, slots=True)
class Verdicts:
    """The verdict on one message: the hole it opened and the id ranges it declares lost.

    Ranges are inclusive. An opened hole is missing, not yet lost: a late message may fill it;
    it is lost when the recovery's snapshot (or a reset) closes it, or when more than
    ``MAX_HOLES`` are open and it is the oldest.
    """

    verdict: Verdict
    lost: tuple[tuple[int, int], ...] = ()
    opened: tuple[tuple[int, int], ...] = ()


_IN_ORDER = Verdicts(Verdict.IN_ORDER)
_DUPLICATE = Verdicts(Verdict.DUPLICATE)
_UNSYNCED = Verdicts(Verdict.UNSYNCED)
_KEEPALIVE = Verdicts(Verdict.KEEPALIVE)


@dataclass(slots=True)
class _Key:
    last: int
    holes: list[tuple[int, int]] = field(default_factory=list)  # sorted, disjoint


class Chain:
    """Per-key chain state: the last id and the open holes below it."""

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}

    def last(self, key: str) -> int | None:
        """The last id of ``key`` (None before its first snapshot)."""
        st = self._keys.get(key)
        return None if st is None else st.last

    def holes(self, key: str) -> tuple[tuple[int, int], ...]:
        """The open holes of ``key``, oldest first."""
        st = self._keys.get(key)
        return () if st is None else tuple(st.holes)

    def restart(self, key: str, last: int, verdict: Verdict) -> Verdicts:
        """A snapshot or a venue reset at ``last``: open holes close as lost (up to ``last``)."""
        st = self._keys.get(key)
        lost: tuple[tuple[int, int], ...] = ()
        if st is not None and st.holes and verdict is Verdict.SNAPSHOT:
            # The ledger's rule: lost from the first hole to the snapshot that replaced it.
            lost = ((st.holes[0][0], max(last, st.holes[-1][1])),)
        elif st is not None and st.holes:
            lost = tuple(st.holes)  # a reset: the old numbering's holes can never fill
        self._keys[key] = _Key(last)
        return Verdicts(verdict, lost)

    def load(self, key: str, last: int, holes: list[tuple[int, int]]) -> None:
        """Set the state of ``key`` as ``last`` and ``holes`` once read it (a checkpoint)."""
        self._keys[key] = _Key(last, holes)

    def settle(self, key: str) -> tuple[tuple[int, int], ...]:
        """Give up the open holes of ``key`` (the recovery replaced them); returns them."""
        st = self._keys.get(key)
        if st is None:
            return ()
        lost, st.holes = tuple(st.holes), []
        return lost

    def step(self, key: str, prev: int, last: int) -> Verdicts:
        """A message covering ``prev + 1 .. last`` of ``key`` (``prev < last``)."""
        st = self._keys.get(key)
        if st is None:
            return _UNSYNCED
        if prev == st.last:
            st.last = last
            return _IN_ORDER
        if prev > st.last:
            hole = (st.last + 1, prev)
            st.holes.append(hole)
            given_up = tuple(st.holes[:-MAX_HOLES])
            del st.holes[:-MAX_HOLES]
            st.last = last
            return Verdicts(Verdict.GAP, given_up, (hole,))
        if _fill(st.holes, prev + 1, min(last, st.last)):
            if last > st.last:
                st.last = last
            return Verdicts(Verdict.LATE)
        if last > st.last:  # overlaps the end of the chain: a venue re-send; keep the new end
            st.last = last
            return _IN_ORDER
        return _DUPLICATE


def _fill(holes: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """Remove ``lo..hi`` from the holes; True if it covered any missing id."""
    touched = False
    out: list[tuple[int, int]] = []
    for a, b in holes:
        if b < lo or a > hi:
            out.append((a, b))
            continue
        touched = True
        if a < lo:
            out.append((a, lo - 1))
        if b > hi:
            out.append((hi + 1, b))
    holes[:] = out
    return touched


class OkxBooks:
    """OKX v5 ``books`` per instId (OKX API v5, "Order book channel", sequence ID rules).

    * ``prevSeqId == -1``: a snapshot; the chain restarts at its ``seqId``;
    * ``seqId == prevSeqId`` with empty ``asks`` and ``bids``: nothing changed for a while, the
      message only says the stream is alive (its ``prevSeqId`` must still be the last id);
    * ``seqId < prevSeqId``: the sequence was reset (maintenance): not a loss, the chain
      continues from the new ``seqId``;
    * otherwise the update needs ``prevSeqId`` == the last ``seqId``.

    ``seqId`` is the same on every connection, so a second connection continues the chain.
    The book ``checksum`` is deprecated (always 0) and never read.
    """

    def __init__(self) -> None:
        self.chain = Chain()

    def observe(self, msg: Message) -> Verdicts | None:
        """The verdict on a parsed OKX message (None: not a ``books`` message)."""
        if msg.channel != "books":
            return None
        data = msg.data["data"][0]
        empty = not data["asks"] and not data["bids"]
        return self.check(msg.symbol, data["prevSeqId"], data["seqId"], empty)

    def check(self, inst_id: str, prev_seq: int, seq: int, empty: bool) -> Verdicts:
        """The verdict on one ``books`` message."""
        if prev_seq == -1:
            return self.chain.restart(inst_id, seq, Verdict.SNAPSHOT)
        last = self.chain.last(inst_id)
        if last is None:
            return _UNSYNCED
        if seq == prev_seq and empty:
            return _KEEPALIVE if prev_seq == last else self.chain.step(inst_id, prev_seq, seq)
        if seq < prev_seq:
            return self.chain.restart(inst_id, seq, Verdict.RESET)
        return self.chain.step(inst_id, prev_seq, seq)


class BybitBooks:
    """Bybit v5 ``orderbook.{depth}.{symbol}`` per topic (Bybit API v5, "Orderbook").

    ``type: snapshot`` replaces the book (after subscribing, or re-sent by Bybit at any time);
    ``u == 1`` is a snapshot sent because the service restarted (a reset, not a loss); a
    ``delta`` needs ``u`` == the last ``u`` + 1. ``seq`` is a cross sequence for comparing
    depths, not a gap counter, and is not read. Level 1 re-sends its snapshot with the same
    ``u`` when nothing changed for 3 s: a snapshot at the last ``u`` is a plain restart.
    """

    def __init__(self) -> None:
        self.chain = Chain()

    def observe(self, msg: Message) -> Verdicts | None:
        """The verdict on a parsed Bybit message (None: not an order book)."""
        if msg.seq is None or not msg.channel.startswith("orderbook."):
            return None
        topic = f"{msg.channel}.{msg.symbol}"  # each depth of a symbol numbers its own u
        return self.check(topic, msg.seq, msg.data["type"] == "snapshot")

    def check(self, topic: str, u: int, snapshot: bool) -> Verdicts:
        """The verdict on one orderbook message of ``topic``."""
        if u == 1:
            return self.chain.restart(topic, u, Verdict.RESET)
        if snapshot:
            return self.chain.restart(topic, u, Verdict.SNAPSHOT)
        return self.chain.step(topic, u - 1, u)


class CoinbaseSequence:
    """Coinbase Advanced Trade's ``sequence_num`` on one connection (Advanced Trade WebSocket,
    "Sequence Numbers"): every message of a connection, whatever its channel or product,
    carries the next number, so a jump means messages were dropped, though not which
    products they were for. The first message of a connection starts the chain.
    """

    KEY = "connection"

    def __init__(self) -> None:
        self.chain = Chain()

    def settle(self) -> tuple[tuple[int, int], ...]:
        """The recovery (resubscribing level2: fresh snapshots) is in: the holes are lost."""
        return self.chain.settle(self.KEY)

    def to_doc(self) -> list[Any] | None:
        """The chain as JSON-able data, ``[last, holes]`` (None before the first message)."""
        last = self.chain.last(self.KEY)
        if last is None:
            return None
        return [last, [list(hole) for hole in self.chain.holes(self.KEY)]]

    @classmethod
    def from_doc(cls, doc: list[Any] | None) -> CoinbaseSequence:
        """The chain ``to_doc`` gave (raises KeyError, TypeError or ValueError if damaged)."""
        sequence = cls()
        if doc is not None:
            last, holes = doc
            sequence.chain.load(cls.KEY, int(last), [(int(a), int(b)) for a, b in holes])
        return sequence

    def check(self, sequence_num: int) -> Verdicts:
        """The verdict on one message of this connection."""
        if self.chain.last(self.KEY) is None:
            return self.chain.restart(self.KEY, sequence_num, Verdict.SNAPSHOT)
        return self.chain.step(self.KEY, sequence_num - 1, sequence_num)
