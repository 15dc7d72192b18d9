"""Loss detection over a chain of ids shared by many streams: Coinbase Advanced Trade's
connection-wide ``sequence_num``. Sans-I/O: ids in, verdicts out. (OKX and Bybit number each
stream: their rules are the adapters' ``step`` over the sequence tracker.)

The rule over a chain of id ranges: a message covering ``prev + 1 .. last`` follows the chain
when ``prev`` is the last id seen.

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

__all__ = [
    "MAX_HOLES",
    "Chain",
    "CoinbaseSequence",
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

    def restart(self, key: str, last: int) -> Verdicts:
        """A snapshot at ``last``: open holes close as lost (up to ``last``)."""
        st = self._keys.get(key)
        lost: tuple[tuple[int, int], ...] = ()
        if st is not None and st.holes:
            # The ledger's rule: lost from the first hole to the snapshot that replaced it.
            lost = ((st.holes[0][0], max(last, st.holes[-1][1])),)
        self._keys[key] = _Key(last)
        return Verdicts(Verdict.SNAPSHOT, lost)

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
            return self.chain.restart(self.KEY, sequence_num)
        return self.chain.step(self.KEY, sequence_num - 1, sequence_num)
