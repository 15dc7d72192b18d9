"""``fastfeed replay``: serve a recording back over the venue protocol, so a strategy written
against the live feed runs against recorded data.

This is the simulator's server (fastfeed/sim/) with another content source: instead of
generating frames, each stream's history is the recorded frames in SQLite, read on demand by
seq through the ``messages`` unique index (memory stays bounded however long the recording).
Commands, acks with ``streams {first_seq, head_seq}``, resume, pings, flow control and
slow-reader drops are the simulator's, unchanged (docs/protocol.md).

Time: the replay clock starts at the first subscribe. With ``--speed S`` a recorded frame is
published once ``S * elapsed`` has passed its receive time relative to the recording's first
one (every stream on one clock, so cross-stream timing is kept); with ``--speed max`` a
stream's head advances whenever a subscriber has caught up (the simulator's burst mode), as
fast as the client reads. A subscribe without ``resume`` starts at the current head, so a
client that subscribes first gets the recording from its first frame. At the end of the data
nothing more is sent; connections stay open and pings are still answered.

Frames are published in seq order and only while seqs are contiguous: a stream stops at its
first missing seq (a lost or still-open gap: see ``fastfeed gaps``), because the protocol's
ack cannot say that a seq in the middle of a history is gone.

A stream has one seq space on the wire, so a stream the venue restarted during the recording
(several epochs: see fastfeed/derive/sequence.py) is served from its latest epoch only; ``export``
has them all.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
from collections import deque
from pathlib import Path

import uvloop

from fastfeed import defaults
from fastfeed.datadir import JOURNAL_DIR, STORE_FILE, open_data_dir
from fastfeed.defaults import SIM_HOST
from fastfeed.errors import ConfigError
from fastfeed.journal import end_of_log
from fastfeed.sim import SimConfig, SimServer
from fastfeed.sim.history import Stream
from fastfeed.sim.server import serve_until_signalled
from fastfeed.store import Store

__all__ = ["ReplayServer", "main_replay", "parse_speed", "serve_replay"]

log = logging.getLogger("fastfeed.tools.replay")


def parse_speed(text: str) -> float:
    """``--speed``: a positive factor of recorded time, or ``max``; ConfigError otherwise."""
    if text == "max":
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not (speed > 0 and math.isfinite(speed)):
        raise ConfigError(
            f"--speed {text!r}: expected a positive number (1.0 = recorded pace) or max"
        )
    return speed


class _Recording:
    """The read-only store every replayed stream reads its frames from."""

    def __init__(self, db_path: Path) -> None:
        self.store = Store.open(db_path, readonly=True)
        self.origin_ns = self.store.first_recv_ns()  # the recording's first receive time


class ReplayHistory:
    """One recorded stream as a simulator ``History``: ``first_seq`` to the released head."""

    __slots__ = ("_ahead", "_head", "_key", "_last", "_mean", "_rec", "first_seq")

    def __init__(self, rec: _Recording, channel: str, symbol: str) -> None:
        epoch, first, last, mean = rec.store.latest_epoch(channel, symbol)
        self._key = (channel, symbol, epoch)  # the latest epoch (module docstring)
        self.first_seq = first or 1
        self._rec = rec
        self._head = self.first_seq - 1  # nothing released yet
        self._last = last
        self._mean = mean
        self._ahead: deque[tuple[int, int]] = deque()  # upcoming (seq, recv_ns) after the head

    @property
    def head_seq(self) -> int:
        """The last seq released so far."""
        return self._head

    def mean_size(self) -> float:
        """Average recorded frame size (the simulator sizes its write chunks with it)."""
        return self._mean

    def slice(self, from_seq: int, limit: int) -> list[bytes]:
        """Up to ``limit`` recorded frames from ``from_seq``, none past the released head."""
        if from_seq < self.first_seq:
            raise ValueError(f"seq {from_seq} is not in the recording (first is {self.first_seq})")
        upto = min(self._head, from_seq + limit - 1)
        if upto < from_seq:
            return []
        return self._rec.store.frames(*self._key, from_seq, upto)

    def release(self, until_ns: float, limit: int) -> None:
        """Publish up to ``limit`` more seqs received before ``until_ns``, contiguously."""
        released = 0
        while released < limit:
            if not self._ahead and not self._read_ahead():
                return
            seq, recv_ns = self._ahead[0]
            if seq != self._head + 1:
                self._ahead.clear()
                self._last = self._head  # a hole: the stream ends here (module docstring)
                log.warning(
                    "replay of %s:%s stops at seq %d: seq %d is not in the recording",
                    *self._key[:2],
                    self._head,
                    self._head + 1,
                )
                return
            if recv_ns >= until_ns:
                return
            self._ahead.popleft()
            self._head = seq
            released += 1

    def _read_ahead(self) -> bool:
        if self._head >= self._last:
            return False
        self._ahead.extend(
            self._rec.store.seq_times(*self._key, self._head, defaults.REPLAY_AHEAD_ROWS)
        )
        return bool(self._ahead)


class _ReplayTable:
    """The recorded streams (a simulator ``StreamSource``), and the replay clock that decides
    what each has published."""

    def __init__(self, rec: _Recording, speed: float) -> None:
        self._rec = rec
        self._speed = speed
        self._clock_start: float | None = None
        self._streams: dict[tuple[str, str], tuple[Stream, ReplayHistory]] = {}

    def get(self, channel: str, symbol: str) -> Stream | None:
        """The stream if a session asked for it already."""
        found = self._streams.get((channel, symbol))
        return None if found is None else found[0]

    def get_or_create(self, channel: str, symbol: str, now: float) -> Stream:
        """The stream (empty if the recording has none), brought up to the replay clock."""
        if self._clock_start is None:
            self._clock_start = now  # the first subscribe starts the replay clock
        found = self._streams.get((channel, symbol))
        if found is None:
            history = ReplayHistory(self._rec, channel, symbol)
            found = self._streams[(channel, symbol)] = (Stream(channel, symbol, history), history)
        self._release(found[1], now)
        return found[0]

    def _release(self, history: ReplayHistory, now: float) -> None:
        """Paced: publish what the replay clock has passed (``max`` publishes in ``advance``)."""
        if math.isinf(self._speed):
            return
        start = self._clock_start if self._clock_start is not None else now
        until = self._rec.origin_ns + (now - start) * self._speed * 1e9
        history.release(until, 2**62)

    def advance(self, stream: Stream, count: int) -> None:
        """Burst mode: a subscriber caught up with ``stream`` (``count`` is the batch hint)."""
        history = self._streams[(stream.channel, stream.symbol)][1]
        if math.isinf(self._speed):
            history.release(math.inf, count)
        else:
            self._release(history, asyncio.get_running_loop().time())


class ReplayServer(SimServer):
    """The simulator server serving a recording (see the module docstring)."""

    def __init__(self, db_path: Path, speed: float) -> None:
        # Burst mode: heads advance when a subscriber catches up, which is when replay checks
        # its clock; the simulator's ticker wakes every subscriber every few milliseconds.
        self._recording = _Recording(db_path)
        super().__init__(SimConfig(burst=True), _ReplayTable(self._recording, speed))

    @property
    def applied_lsn(self) -> int:
        """The journal LSN the recording served (SQLite's) reaches."""
        return self._recording.store.applied_lsn()

    async def close(self) -> None:
        """Stop serving and close the recording."""
        await super().close()
        self._recording.store.close()


async def serve_replay(
    data_dir: Path, *, speed: float = 1.0, host: str = SIM_HOST, port: int = 0
) -> ReplayServer:
    """Start serving ``data_dir``'s recording on ``host:port`` and return the running server."""
    open_data_dir(data_dir)
    server = ReplayServer(data_dir / STORE_FILE, speed)
    behind = end_of_log(data_dir / JOURNAL_DIR).last_lsn - server.applied_lsn
    if behind > 0:
        log.warning(
            "SQLite is %d journal records behind the journal: replay serves what SQLite holds"
            " (start the recorder on this data dir once to bring it up to date)",
            behind,
        )
    await server.start(host, port)
    return server


def main_replay(args: argparse.Namespace) -> int:
    """``fastfeed replay``: serve until SIGINT/SIGTERM; returns the exit code."""
    speed = parse_speed(args.speed)
    return uvloop.run(
        serve_until_signalled(
            serve_replay(args.data_dir, speed=speed, host=args.host, port=args.port), "replay"
        )
    )
