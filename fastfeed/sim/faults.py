"""Seeded, reproducible fault injection for the simulator, one plan per server.

A :class:`FaultPlan` says what to break; :class:`ConnectionFaults` applies it to one connection's
outgoing push frames with its own ``random.Random`` seeded from the plan seed and the
connection's index (0 for the first accepted connection), so the same plan, connection order
and subscriptions break the same frames every run. Connection-level faults (refusing
connections, rejecting subscriptions) are applied by the server from the same plan.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

from fastfeed.defaults import MAX_FRAME_BYTES, SIM_SEED
from fastfeed.sim.wire import OP_BINARY, OP_TEXT
from fastfeed.venues.tickdb import CODE_UNKNOWN_NAME

__all__ = ["GARBAGE_KINDS", "Action", "ConnectionFaults", "FaultPlan", "oversize_pushes"]

GARBAGE_KINDS = ("text", "binary", "truncated", "shape", "oversized")
_WRONG_SHAPE = b'{"cmd":"depth","data":["not","an","object"]}'
_PAD_OPEN = b',"pad":"'  # a padded push: the push's last "}" replaced by this, x..., '"}'


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Every fault knob; the defaults inject nothing. Frame counts are push frames sent."""

    seed: int = SIM_SEED
    connections: int | None = None  # faults apply to the first N connections only (None: all)
    abort_after: int | None = None  # drop TCP without a close frame after N push frames
    close_after: int | None = None  # send a close frame (1012) after N push frames
    skip_rate: float = 0.0  # fraction of push frames never sent (a seq gap, resumable)
    duplicate_rate: float = 0.0  # fraction of push frames sent twice
    reorder_rate: float = 0.0  # fraction of push frames swapped with the next one
    garbage_rate: float = 0.0  # fraction of push frames preceded by a garbage frame
    garbage_kinds: tuple[str, ...] = GARBAGE_KINDS
    oversize_bytes: int = MAX_FRAME_BYTES + 1  # size of an "oversized" frame (garbage or push)
    # (channel, symbol, seq): that push is held padded to ``oversize_bytes``, so every send of
    # it (live or resumed, on any connection) is over the size limit
    oversize_pushes: tuple[tuple[str, str, int], ...] = ()
    stall_after: int | None = None  # after N push frames send nothing, not even pongs ...
    stall_s: float = 0.0  # ... for this many seconds, then carry on where it stopped
    reject_symbols: frozenset[str] = frozenset()  # subscribing any of these is refused ...
    reject_code: int = CODE_UNKNOWN_NAME  # ... with this code
    refuse_connections: int = 0  # the first N connection attempts get HTTP 503
    refuse_s: float = 0.0  # connection attempts in the first S seconds get HTTP 503

    def __post_init__(self) -> None:
        for name in ("skip_rate", "duplicate_rate", "reorder_rate", "garbage_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        unknown = set(self.garbage_kinds) - set(GARBAGE_KINDS)
        if unknown or not self.garbage_kinds:
            raise ValueError(f"garbage kinds must be among {', '.join(GARBAGE_KINDS)}")
        if any(seq < 1 for _, _, seq in self.oversize_pushes):
            raise ValueError("an oversized push needs a seq of at least 1")

    def applies_to(self, connection_index: int) -> bool:
        """Whether frame faults apply to the connection accepted as number ``connection_index``."""
        return self.connections is None or connection_index < self.connections


class Action(enum.Enum):
    """What the connection must do after sending a shaped batch."""

    NONE = "none"
    ABORT = "abort"
    CLOSE = "close"
    STALL = "stall"


class ConnectionFaults:
    """Applies a plan's frame faults to one connection's push frames, in order."""

    def __init__(self, plan: FaultPlan, connection_index: int) -> None:
        self.plan = plan
        self.sent = 0  # push frames handed to the socket so far (duplicates count once)
        self._rng = random.Random(plan.seed * 1_000_003 + connection_index)
        self._stalled = False
        self._swap: bytes | None = None

    def shape(self, payloads: Sequence[bytes], out: list[tuple[int, bytes]]) -> tuple[int, Action]:
        """Append the frames to send for ``payloads`` to ``out``.

        Returns how many payloads were consumed (sent or deliberately skipped) and what to do
        next; payloads past the consumed count must be offered again after a stall.
        """
        plan = self.plan
        rng = self._rng.random
        i = 0
        n = len(payloads)
        while i < n:
            limit = self._limit()
            if limit is not None and self.sent >= limit[0]:
                if limit[1] is Action.STALL:
                    self._stalled = True
                return i, limit[1]
            payload = payloads[i]
            if plan.garbage_rate and rng() < plan.garbage_rate:
                out.append(self._garbage(payload))
            if plan.skip_rate and rng() < plan.skip_rate:
                i += 1
                continue
            if self._swap is not None:
                # The frame held back by a reorder goes right after this one.
                out.append((OP_TEXT, payload))
                out.append((OP_TEXT, self._swap))
                self._swap = None
                self.sent += 2
                i += 1
                continue
            if plan.reorder_rate and rng() < plan.reorder_rate:
                self._swap = payload  # held across batches, so batching cannot change the draws
                i += 1
                continue
            out.append((OP_TEXT, payload))
            if plan.duplicate_rate and rng() < plan.duplicate_rate:
                out.append((OP_TEXT, payload))
            self.sent += 1
            i += 1
        return n, Action.NONE

    def _limit(self) -> tuple[int, Action] | None:
        """The nearest frame-count fault still ahead: (count, action)."""
        plan = self.plan
        found: tuple[int, Action] | None = None
        for count, action in (
            (plan.abort_after, Action.ABORT),
            (plan.close_after, Action.CLOSE),
            (None if self._stalled else plan.stall_after, Action.STALL),
        ):
            if count is not None and (found is None or count < found[0]):
                found = (count, action)
        return found

    def _garbage(self, payload: bytes) -> tuple[int, bytes]:
        kind = self.plan.garbage_kinds[self._rng.randrange(len(self.plan.garbage_kinds))]
        if kind == "text":
            return OP_TEXT, b"this is not JSON"
        if kind == "binary":
            return OP_BINARY, self._rng.randbytes(16)
        if kind == "truncated":
            return OP_TEXT, payload[: len(payload) // 2]
        if kind == "shape":
            return OP_TEXT, _WRONG_SHAPE
        return OP_TEXT, b"x" * self.plan.oversize_bytes


def oversize_pushes(
    plan: FaultPlan, channel: str, symbol: str, from_seq: int, batch: list[bytes]
) -> list[bytes]:
    """``batch`` (seqs from ``from_seq`` of one stream) with the plan's oversized pushes padded.

    The push keeps its JSON and gains a ``"pad"`` string that makes it ``oversize_bytes`` long,
    like a venue message that really is that big.
    """
    last = from_seq + len(batch) - 1
    for ch, sym, seq in plan.oversize_pushes:
        if ch == channel and sym == symbol and from_seq <= seq <= last:
            batch = list(batch)
            frame = batch[seq - from_seq]
            pad = max(plan.oversize_bytes - len(frame) - len(_PAD_OPEN) - 1, 0)
            batch[seq - from_seq] = frame[:-1] + _PAD_OPEN + b"x" * pad + b'"}'
    return batch
