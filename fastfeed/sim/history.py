"""Per-stream published history for resume, and the table of streams under one byte cap.

History stores the published bytes themselves, so a replayed seq is the live frame by
construction. Each stream keeps at most ``max_messages``; all streams together keep at most
``max_bytes``: an append over the cap evicts the appending stream's oldest messages first (in
steady state every stream appends at the same rate, so this spreads the cap evenly), then the
largest stream's. What was evicted is reported to resuming clients through ``first_seq``.

Sessions see streams only through two small interfaces, so another content source (``replay``:
a recording) plugs in by composition: ``StreamSource`` (find, create, advance a stream) and
``History`` (what a stream holds for a cursor).
"""

from __future__ import annotations

from typing import Protocol

from fastfeed.sim.content import StreamGenerator

__all__ = ["GeneratedStream", "History", "Stream", "StreamHistory", "StreamSource", "StreamTable"]


class History(Protocol):
    """The seqs ``first_seq``..``head_seq`` of one stream, as a session reads them."""

    first_seq: int

    @property
    def head_seq(self) -> int:
        """The last seq published (``first_seq - 1``: none yet)."""
        ...

    def slice(self, from_seq: int, limit: int) -> list[bytes]:
        """Up to ``limit`` frames from ``from_seq`` (which must be >= ``first_seq``)."""
        ...

    def mean_size(self) -> float:
        """Average frame size in bytes (sessions size their write chunks with it)."""
        ...


class Stream:
    """One channel + symbol and its history: what a session's cursor points into."""

    __slots__ = ("channel", "history", "symbol")

    def __init__(self, channel: str, symbol: str, history: History) -> None:
        self.channel = channel
        self.symbol = symbol
        self.history = history


class StreamSource(Protocol):
    """Where a server's streams come from: generated (``StreamTable``) or recorded (replay)."""

    def get(self, channel: str, symbol: str) -> Stream | None:
        """The stream if it exists."""
        ...

    def get_or_create(self, channel: str, symbol: str, now: float) -> Stream:
        """The stream, created (empty) on first use at loop time ``now``."""
        ...

    def advance(self, stream: Stream, count: int) -> None:
        """Burst mode: a subscriber caught up with ``stream``; publish up to ``count`` more."""
        ...


_COMPACT_MIN = 4096  # evicted slots tolerated at the front of the list before compacting it


class StreamHistory:
    """The published messages of one stream from ``first_seq`` to ``head_seq`` inclusive."""

    __slots__ = ("_msgs", "_start", "first_seq", "max_messages", "nbytes", "published_bytes")

    def __init__(self, max_messages: int, first_seq: int = 1) -> None:
        if max_messages < 1:
            raise ValueError(f"history must keep at least one message, got {max_messages}")
        self._msgs: list[bytes] = []
        self._start = 0  # index in _msgs of first_seq: eviction is amortized O(1)
        self.first_seq = first_seq
        self.max_messages = max_messages
        self.nbytes = 0  # bytes currently held
        self.published_bytes = 0  # bytes ever appended (for average message size)

    def __len__(self) -> int:
        return len(self._msgs) - self._start

    @property
    def head_seq(self) -> int:
        """The last seq published (0 before the first)."""
        return self.first_seq + len(self) - 1

    def append(self, msg: bytes) -> int:
        """Add the next seq; returns the bytes evicted to stay within ``max_messages``."""
        self._msgs.append(msg)
        self.nbytes += len(msg)
        self.published_bytes += len(msg)
        return self.evict_oldest() if len(self) > self.max_messages else 0

    def evict_oldest(self) -> int:
        """Forget the oldest message; returns its size."""
        msg = self._msgs[self._start]
        self._start += 1
        self.first_seq += 1
        self.nbytes -= len(msg)
        if self._start >= _COMPACT_MIN and self._start * 2 >= len(self._msgs):
            del self._msgs[: self._start]
            self._start = 0
        return len(msg)

    def slice(self, from_seq: int, limit: int) -> list[bytes]:
        """Up to ``limit`` messages from ``from_seq`` (which must be >= ``first_seq``)."""
        if from_seq < self.first_seq:
            raise ValueError(f"seq {from_seq} is no longer held (first is {self.first_seq})")
        at = self._start + from_seq - self.first_seq
        return self._msgs[at : at + limit]

    def mean_size(self) -> float:
        """Average published message size in bytes (0 before the first)."""
        head = self.head_seq
        return self.published_bytes / head if head else 0.0


class GeneratedStream(Stream):
    """A simulated stream: its generator, its history, the time its clock started."""

    __slots__ = ("generated", "generator", "start_seq", "started_at")

    def __init__(self, generator: StreamGenerator, history: StreamHistory, started_at: float):
        super().__init__(generator.channel, generator.symbol, history)
        self.generator = generator
        self.generated = history  # the history typed as what it is (``history`` is a History)
        self.start_seq = history.first_seq  # the first seq this server publishes
        self.started_at = started_at  # loop time the stream started: rate mode publishes ...

    @property
    def published(self) -> int:
        """... ``rate * elapsed`` messages: those from ``start_seq`` up to the head."""
        return self.generated.head_seq - self.start_seq + 1


class StreamTable:
    """Every stream of a server, created on first use, with the global history byte cap."""

    def __init__(
        self,
        seed: int,
        *,
        plain: bool,
        depth_levels: int,
        max_messages: int,
        max_bytes: int,
        start_seq: int = 1,
    ) -> None:
        self._seed = seed
        self._start_seq = start_seq
        self._plain = plain
        self._levels = depth_levels
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self.streams: dict[tuple[str, str], GeneratedStream] = {}
        self.nbytes = 0

    def get(self, channel: str, symbol: str) -> GeneratedStream | None:
        """The stream if it exists."""
        return self.streams.get((channel, symbol))

    def get_or_create(self, channel: str, symbol: str, now: float) -> GeneratedStream:
        """The stream, created with head ``start_seq - 1`` and its clock starting at ``now``.

        A ``start_seq`` above 1 is a venue that restarted keeping its numbering but not its
        history: the seqs before it are not held, and the walk is replayed up to it so every
        seq still has the bytes it would have had without the restart.
        """
        stream = self.streams.get((channel, symbol))
        if stream is None:
            gen = StreamGenerator(
                self._seed, channel, symbol, plain=self._plain, depth_levels=self._levels
            )
            for _ in range(self._start_seq - 1):
                gen.next()
            history = StreamHistory(self._max_messages, first_seq=self._start_seq)
            stream = GeneratedStream(gen, history, now)
            self.streams[(channel, symbol)] = stream
        return stream

    def publish_due(self, now: float, rate: float) -> None:
        """Rate mode: publish on every stream what ``rate`` per second has made due by ``now``."""
        for stream in self.streams.values():
            due = int((now - stream.started_at) * rate) - stream.published
            if due > 0:
                self._publish(stream, due)

    def advance(self, stream: Stream, count: int) -> None:
        """Publish ``count`` more messages on ``stream``, enforcing both history caps."""
        self._publish(self.streams[(stream.channel, stream.symbol)], count)

    def _publish(self, stream: GeneratedStream, count: int) -> None:
        history = stream.generated
        gen_next = stream.generator.next
        added = 0
        for _ in range(count):
            msg = gen_next()
            added += len(msg) - history.append(msg)
        self.nbytes += added
        while self.nbytes > self._max_bytes:
            victim = history if len(history) > 1 else self._largest()
            if victim is None:
                break
            self.nbytes -= victim.evict_oldest()

    def _largest(self) -> StreamHistory | None:
        best = max((s.generated for s in self.streams.values()), key=len, default=None)
        return best if best is not None and len(best) > 1 else None
