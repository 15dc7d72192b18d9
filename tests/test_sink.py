"""The Cython frame sink over a real loopback WebSocket: what reaches Python, and when.

A picows server on 127.0.0.1 sends a burst of simulator frames in one go, so the client gets
them in a few socket reads of many frames each.
"""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import Any

import picows
import pytest

from fastfeed.errors import JournalSyncError
from fastfeed.journal import FsyncMode, Journal, RecordKind, read_journal
from fastfeed.recorder._sink import AcceptTimes, FrameSink, Scanner, StreamTable
from fastfeed.sim.content import StreamGenerator

TIMEOUT_S = 30.0
PONG = b'{"cmd":"pong"}'


class Handler:
    """Records each frame handed to Python, and whether it was durable by then."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.calls: list[tuple[int, bytes, bool]] = []
        self.errors: list[Exception] = []

    def on_unusual_frame(self, lsn: int, recv_ns: int, payload: bytes, binary: bool) -> None:
        self.calls.append((lsn, payload, self.journal.durable_lsn >= lsn))

    def on_journal_error(self, exc: Exception) -> None:
        self.errors.append(exc)


class Control:
    """The connection's side: what a diverted sink hands it."""

    def __init__(self) -> None:
        self.diverted: list[tuple[bytes, bool]] = []

    def data(self, payload: bytes, binary: bool) -> None:
        self.diverted.append((payload, binary))

    def ws_connected(self, transport: picows.WSTransport) -> None:
        pass

    def ws_other_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        pass


def burst() -> list[bytes]:
    """Two streams in seq order, a pong, then one stream jumps ahead and continues."""
    depth, trade = StreamGenerator(3, "depth", "AAPL.US"), StreamGenerator(3, "trade", "BTC.CC")
    frames = [f for _ in range(1000) for f in (depth.next(), trade.next())]
    frames.append(PONG)
    for _ in range(5):
        trade.next()  # skipped: a jump
    frames += [trade.next() for _ in range(100)]
    return frames


async def record(
    journal: Journal,
    frames: list[bytes],
    always: bool,
    control: Control | None = None,
    timing: AcceptTimes | None = None,
    handed_over: int = 0,
    table: StreamTable | None = None,
    want_error: bool = False,
) -> tuple[Handler, Any]:
    handler = Handler(journal)
    streams = table if table is not None else StreamTable()

    class Sender(picows.WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: picows.WSTransport) -> None:
            for frame in frames:  # no await: they leave in as few segments as TCP makes
                transport.send(picows.WSMsgType.TEXT, frame)

    server = await picows.ws_create_server(lambda _: Sender(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    durability = journal if always else None
    sink_of: list[FrameSink] = []

    def make() -> FrameSink:
        sink = FrameSink(
            journal.writer,
            Scanner("tickdb"),
            streams,
            handler,
            control or Control(),
            1,
            durability,
        )
        sink.divert = control is not None
        sink.timing = timing
        sink_of.append(sink)
        return sink

    transport, _ = await picows.ws_connect(make, f"ws://127.0.0.1:{port}/")
    try:
        async with asyncio.timeout(TIMEOUT_S):
            # With --fsync always the frames for Python follow their read's sync.
            while (
                sink_of[0].frames < len(frames)
                or len(handler.calls) < handed_over
                or (want_error and not handler.errors)
            ):
                if handler.errors:
                    break
                await asyncio.sleep(0.001)
    finally:
        transport.disconnect()
        server.close()
        await server.wait_closed()
    return handler, sink_of[0]


@pytest.mark.parametrize("mode", [FsyncMode.GROUP, FsyncMode.ALWAYS])
def test_steady_frames_never_reach_python_and_every_byte_is_journaled(
    tmp_path: Path, mode: FsyncMode
) -> None:
    frames = burst()
    syncs: list[int] = []

    def hook(path: str, start: int, end: int) -> int:
        syncs.append(end - start)
        return 0

    with Journal.open(tmp_path / "journal", fsync=mode, sync_hook=hook) as journal:
        handler, sink = asyncio.run(
            record(journal, frames, mode is FsyncMode.ALWAYS, handed_over=4)
        )
        syncs_during = len(syncs)
    assert handler.errors == []
    records = list(read_journal(tmp_path / "journal"))
    assert [r.payload for r in records] == frames
    assert {(r.kind, r.stream, r.flags) for r in records} == {(RecordKind.INBOUND, 1, 0)}
    # One receive time per socket read: the frames of a read arrived together.
    assert len({r.recv_ns for r in records}) < len(frames) // 20
    # Python sees the first frame of each stream, the pong and the jump; nothing else.
    assert [payload for _, payload, _ in handler.calls] == [
        frames[0],
        frames[1],
        PONG,
        frames[2001],
    ]
    assert sink.steady == len(frames) - 4
    if mode is FsyncMode.ALWAYS:
        # Nothing is handed over before it is durable, and a read of many frames is one sync.
        assert all(durable for _, _, durable in handler.calls)
        assert 0 < syncs_during < len(frames) // 20, syncs_during


def test_with_fsync_always_a_failed_sync_hands_nothing_over(tmp_path: Path) -> None:
    frames = burst()

    def fail(path: str, start: int, end: int) -> int:
        return errno.EIO

    with Journal.open(tmp_path / "journal", fsync=FsyncMode.ALWAYS, sync_hook=fail) as journal:
        handler, _ = asyncio.run(record(journal, frames, True, handed_over=1))
        with pytest.raises(JournalSyncError):
            journal.sync()
    # The first read's frames for Python waited on its sync, which failed: the error instead.
    assert handler.calls == []
    assert handler.errors and isinstance(handler.errors[0], JournalSyncError)


def test_with_fsync_always_a_failed_sync_of_steady_frames_is_reported_at_once(
    tmp_path: Path,
) -> None:
    # A read holding only steady frames has nothing to hand over, yet its failed sync must be
    # reported then, not at some later frame that a quiet feed may never send.
    failing = False

    def sync(path: str, start: int, end: int) -> int:
        return errno.EIO if failing else 0

    depth, table = StreamGenerator(3, "depth", "AAPL.US"), StreamTable()
    with Journal.open(tmp_path / "journal", fsync=FsyncMode.ALWAYS, sync_hook=sync) as journal:
        first = [depth.next() for _ in range(10)]
        handler, _ = asyncio.run(record(journal, first, True, handed_over=1, table=table))
        assert handler.errors == []
        failing = True
        steady = [depth.next()]  # continues the stream the table knows: never Python's
        handler, _ = asyncio.run(record(journal, steady, True, table=table, want_error=True))
        with pytest.raises(JournalSyncError):
            journal.sync()
    assert handler.calls == []
    assert handler.errors and isinstance(handler.errors[0], JournalSyncError)


def test_a_diverted_sink_hands_every_data_frame_to_python_unjournaled(tmp_path: Path) -> None:
    frames = burst()[:100]
    control = Control()
    with Journal.open(tmp_path / "journal") as journal:
        handler, sink = asyncio.run(record(journal, frames, False, control))
    assert list(read_journal(tmp_path / "journal")) == []  # Python journals these itself
    assert control.diverted == [(frame, False) for frame in frames]
    assert handler.calls == [] and sink.steady == 0 and sink.frames == len(frames)


def test_a_timed_sink_counts_each_journaled_frame_once(tmp_path: Path) -> None:
    frames = burst()
    times = AcceptTimes()
    with Journal.open(tmp_path / "journal") as journal:
        _, sink = asyncio.run(record(journal, frames, False, timing=times))
    counts = times.buckets()
    # Steady and unusual frames alike: the histogram times the journal append of each.
    assert sum(counts) == sink.frames == len(frames)
    assert times.max_ns > 0 and len(counts) * times.bucket_ns == 100_000


def test_table_keys_cover_a_thousand_streams() -> None:
    table = StreamTable()
    scanner = Scanner("tickdb")
    gens = [StreamGenerator(1, "trade", f"S{i}") for i in range(1000)]
    for gen in gens:
        found = scanner.key_seq(gen.next())
        assert found is not None and table.register(*found)
    assert table.size == 1000
    for gen in gens:
        found = scanner.key_seq(gen.next())
        assert found is not None and table.last(found[0]) == found[1] - 1
