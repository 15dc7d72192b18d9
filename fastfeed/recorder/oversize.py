"""Which stream holds the frame over the size limit that keeps ending the connection.

picows refuses a frame over ``MAX_FRAME_BYTES`` from its header (close 1009), and the recorder
takes nothing of it or after it (fastfeed/recorder/_sink.pyx), so the stream and seq it held
are unknown. On a venue that resumes by seq the frame is the first one of its stream that the
reconnect asks for again (its resume point: the stream got everything before it), so without a
skip every later connection ends on it. The search narrows the suspects by elimination; a
stream *passed* its resume point R on a connection when seq R arrived there (or the venue's ack
said it has nothing at R yet). The session names each stream of the connection the frame ended
at the seq it would be if it were that stream's: R, or for a stream subscribed live or gone
past R, the next seq it lacks (a frame is met mid-stream as often as at a resume point)::

    IDLE  --1009, suspects----------------> RETRY   suspects: streams that did not pass R
    IDLE  --1009, none--------------------> IDLE    GiveUp (not a resumed frame: not resent)
    RETRY --1009, one suspect at same R---> IDLE    Found(stream, R)
    RETRY --1009, several at same R-------> PROBE   only half of them subscribed (the batch)
    RETRY --1009, none at same R----------> RETRY   a different frame: its suspects instead
    RETRY --every suspect passed----------> IDLE    GiveUp (it was not resent)
    PROBE --1009, one in the batch--------> IDLE    Found(stream, R)
    PROBE --1009, several in the batch----> PROBE   half of those
    PROBE --the batch passed, more left---> PROBE   the next half is subscribed
    PROBE --every suspect passed----------> IDLE    GiveUp

Streams that are not suspects stay subscribed throughout; the suspects outside the batch wait
(about log2(suspects) connections). Pure logic: the session says what happened and asks which
streams it may subscribe.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from fastfeed.derive.streams import StreamKey

__all__ = ["Found", "GiveUp", "OversizeSearch", "Passed", "Phase", "Verdict", "size_text"]

Passed = Callable[[StreamKey, int], bool]  # did the stream pass resume point R on a connection


def size_text(size: int | None) -> str:
    """The refused frame's size for a log line (picows' error text may not carry it)."""
    return f"{size} bytes" if size is not None else "size unknown"


class Phase(enum.Enum):
    """Where the search stands (the module docstring draws the transitions)."""

    IDLE = "idle"
    RETRY = "retry"
    PROBE = "probe"


@dataclass(frozen=True, slots=True)
class Found:
    """The frame over the limit is ``key``'s seq ``seq``: skip it (resume from ``seq + 1``)."""

    key: StreamKey
    seq: int
    size: int | None


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No stream is stuck on the frame (it was not resent): only its existence is known."""

    size: int | None


Verdict = Found | GiveUp


class OversizeSearch:
    """The search for the stream whose resume meets a frame over the size limit."""

    def __init__(self) -> None:
        self.phase = Phase.IDLE
        self._size: int | None = None
        self._suspects: dict[StreamKey, int] = {}  # stream -> the resume point R it is stuck at
        self._batch: dict[StreamKey, int] = {}  # PROBE: the suspects subscribed now

    def allows(self, key: StreamKey) -> bool:
        """Whether ``key`` may be subscribed now (a probe withholds suspects outside its batch)."""
        return self.phase is not Phase.PROBE or key not in self._suspects or key in self._batch

    def oversized(
        self, size: int | None, asked: dict[StreamKey, int], passed: Passed
    ) -> Verdict | None:
        """A connection on which each stream of ``asked`` was resumed at its R ended on a frame
        over the limit; judged once what it delivered is derived. A verdict ends the search."""
        if size is not None:
            self._size = size
        stuck = {k: r for k, r in asked.items() if not passed(k, r)}
        if self.phase is Phase.IDLE:
            return self._incident(stuck)
        if self.phase is Phase.RETRY:
            same = {k: r for k, r in stuck.items() if self._suspects.get(k) == r}
        else:
            same = {k: r for k, r in stuck.items() if self._batch.get(k) == r}
        if not same:
            return self._incident(stuck)  # not the frame searched for: search for this one
        if len(same) == 1:
            ((key, seq),) = same.items()
            return self._end(Found(key, seq, self._size))
        self._suspects = same
        self._probe()
        return None

    def progress(self, passed: Passed) -> tuple[Verdict | None, list[StreamKey]]:
        """After more was derived: a verdict if the search ended, and the streams to subscribe
        now (the next batch of a probe)."""
        if self.phase is Phase.RETRY:
            if all(passed(k, r) for k, r in self._suspects.items()):
                return self._end(GiveUp(self._size)), []
        elif self.phase is Phase.PROBE and all(passed(k, r) for k, r in self._batch.items()):
            for key in self._batch:
                del self._suspects[key]
            if not self._suspects:
                return self._end(GiveUp(self._size)), []
            self._probe()
            return None, list(self._batch)
        return None, []

    def _incident(self, stuck: dict[StreamKey, int]) -> Verdict | None:
        if not stuck:
            return self._end(GiveUp(self._size))
        self.phase = Phase.RETRY
        self._suspects = stuck
        self._batch = {}
        return None

    def _probe(self) -> None:
        self.phase = Phase.PROBE
        keys = sorted(self._suspects)
        self._batch = {k: self._suspects[k] for k in keys[: (len(keys) + 1) // 2]}

    def _end(self, verdict: Verdict) -> Verdict:
        self.phase = Phase.IDLE
        self._size = None
        self._suspects = {}
        self._batch = {}
        return verdict
