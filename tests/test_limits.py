"""Resource limits on the venue connection: exceeding one is logged and survived."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import picows
import pytest

from fastfeed import defaults
from fastfeed.journal import FsyncMode, Journal, read_journal
from fastfeed.recorder.backoff import Backoff
from fastfeed.recorder.connection import Connection
from fastfeed.recorder.feed import Feed
from fastfeed.venues.tickdb import TickDBAdapter

__all__: list[str] = []

LIMIT = 256 * 1024  # bytes of unsent commands the connection under test tolerates
COMMAND = b'{"cmd":"ping","pad":"' + b"x" * (64 * 1024) + b'"}'


class _Deaf(picows.WSListener):
    """A venue that accepts the connection and never reads another byte from it."""

    def __init__(self, opened: list[picows.WSTransport]) -> None:
        self._opened = opened

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self._opened.append(transport)
        transport.underlying_transport.pause_reading()


class _Handler:
    """Sends commands as fast as it can once connected; notes what the connection reports."""

    def __init__(self) -> None:
        self.refused_at: int | None = None
        self.reasons: list[str] = []
        self.connections = 0
        self.second = asyncio.Event()

    def on_connected(self, connection: Connection) -> None:
        self.connections += 1
        if self.connections == 2:
            self.second.set()
            return
        for sent in range(10_000):  # far more than any socket buffer takes
            if not connection.send(COMMAND):
                self.refused_at = sent
                return

    def on_frame(self, payload: bytes, binary: bool) -> None: ...
    def on_disconnected(self, reason: str) -> None:
        self.reasons.append(reason)

    def on_oversized(self, size: int | None) -> None: ...
    def on_heartbeat(self, connection: Connection) -> None: ...


def test_a_venue_that_stops_reading_is_dropped_then_reconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="fastfeed.connection"):
        handler = asyncio.run(_run_against_a_deaf_venue())
    assert handler.refused_at is not None and handler.refused_at > 0
    assert handler.reasons[0] == f"venue stopped reading: over {LIMIT} bytes pending"
    assert any("the venue stopped reading" in r.getMessage() for r in caplog.records)


async def _run_against_a_deaf_venue() -> _Handler:
    opened: list[picows.WSTransport] = []
    server = await picows.ws_create_server(lambda request: _Deaf(opened), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    handler = _Handler()
    connection = Connection(
        f"ws://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/", handler, max_pending_bytes=LIMIT
    )
    task = asyncio.create_task(connection.run())
    try:
        async with asyncio.timeout(60):
            await handler.second.wait()  # the drop was survived: a new connection came up
    finally:
        connection.stop()
        await task
        server.close()
        for transport in opened:  # the server's ends, which never read the close either
            transport.disconnect(graceful=False)
        await server.wait_closed()
    return handler


FLOOD_FRAMES = 40_000
FLOOD_FRAME = b'{"cmd":"depth","data":{"symbol":"AAPL.US","pad":"' + b"x" * 150 + b'"}}'


class _Flood(picows.WSListener):
    """A venue that writes a backlog far larger than any socket buffer the moment we connect."""

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        for _ in range(FLOOD_FRAMES):
            transport.send(picows.WSMsgType.TEXT, FLOOD_FRAME)


class _Counter:
    """Counts frames per turn of the event loop (a call_soon chain marks each turn)."""

    def __init__(self) -> None:
        self.frames = 0
        self.this_turn = 0
        self.most_in_a_turn = 0
        self.done = asyncio.Event()
        asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self.this_turn = 0
        if not self.done.is_set():
            asyncio.get_running_loop().call_soon(self._turn)

    def on_connected(self, connection: Connection) -> None: ...
    def on_frame(self, payload: bytes, binary: bool) -> None:
        self.frames += 1
        self.this_turn += 1
        self.most_in_a_turn = max(self.most_in_a_turn, self.this_turn)
        sum(payload)  # some work per frame, so the backlog piles up in the socket
        if self.frames == FLOOD_FRAMES:
            self.done.set()

    def on_disconnected(self, reason: str) -> None: ...
    def on_oversized(self, size: int | None) -> None: ...
    def on_heartbeat(self, connection: Connection) -> None: ...


def test_a_backlog_is_read_a_socket_buffer_at_a_time_so_the_loop_keeps_turning() -> None:
    most = asyncio.run(_read_a_flood())
    # picows delivers everything one read returned before the loop turns again; without a
    # bounded receive buffer one read returns up to the kernel's autotuned size (megabytes).
    per_read = 2 * defaults.RECV_BUFFER_BYTES // (len(FLOOD_FRAME) + 4)  # the kernel doubles it
    assert 0 < most <= 2 * per_read


async def _read_a_flood() -> int:
    server = await picows.ws_create_server(lambda request: _Flood(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    counter = _Counter()
    connection = Connection(f"ws://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/", counter)
    await _run_until(counter.done, connection, server)
    return counter.most_in_a_turn


async def _run_until(done: asyncio.Event, connection: Connection, server: asyncio.Server) -> None:
    """Run ``connection`` until ``done`` is set (60 s at most); then stop it and ``server``."""
    task = asyncio.create_task(connection.run())
    try:
        async with asyncio.timeout(60):
            await done.wait()
    finally:
        connection.stop()
        await task
        server.close()
        await server.wait_closed()


class _Oversized(picows.WSListener):
    """A venue whose first frame on every connection is over the client's frame limit."""

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        transport.send(picows.WSMsgType.TEXT, b"x" * OVERSIZE)


OVERSIZE = 5000  # bytes: over the limit the connection under test is given
PROMPT = defaults.OVERSIZED_PROMPT_RECONNECTS
REFUSED = "Received frame with payload size exceeding max allowed size,"  # picows 2.3


class _Reports:
    """Notes what the connection reports, in order; ``enough`` is set once past the prompt
    reconnects (each connection: connected, oversized, disconnected)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.enough = asyncio.Event()

    def on_connected(self, connection: Connection) -> None:
        self.calls.append(("connected", None))
        if len(self.calls) >= 3 * (PROMPT + 2):
            self.enough.set()

    def on_frame(self, payload: bytes, binary: bool) -> None:
        self.calls.append(("frame", payload))

    def on_disconnected(self, reason: str) -> None:
        self.calls.append(("disconnected", reason))

    def on_oversized(self, size: int | None) -> None:
        self.calls.append(("oversized", size))

    def on_heartbeat(self, connection: Connection) -> None: ...


def test_a_frame_over_the_limit_is_reported_with_its_size_and_a_run_reconnects_promptly() -> None:
    reports, delays = asyncio.run(_run_against_oversized_frames())
    first = reports.calls[:3]
    assert first[:2] == [("connected", None), ("oversized", OVERSIZE)]
    assert first[2] == ("disconnected", f"protocol error: {REFUSED} {OVERSIZE} > {OVERSIZE - 1}")
    assert reports.calls[3:6] == first
    # No backoff while the handler finds and skips the frame: a run of prompt reconnects; a
    # venue that sends one on every connection past that run gets the backoff.
    assert delays == ["after_data"] * PROMPT + ["next_delay"]


class _NotingBackoff(Backoff):
    def __init__(self) -> None:
        super().__init__(initial_s=0.01, after_data_s=(0.0, 0.0))
        self.calls: list[str] = []

    def next_delay(self) -> float:
        self.calls.append("next_delay")
        return super().next_delay()

    def after_data(self) -> float:
        self.calls.append("after_data")
        return super().after_data()


async def _run_against_oversized_frames() -> tuple[_Reports, list[str]]:
    server = await picows.ws_create_server(lambda request: _Oversized(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reports = _Reports()
    backoff = _NotingBackoff()
    url = f"ws://127.0.0.1:{port}/"
    connection = Connection(url, url, reports, max_frame_bytes=OVERSIZE - 1, backoff=backoff)
    task = asyncio.create_task(connection.run())
    try:
        async with asyncio.timeout(60):
            await reports.enough.wait()
    finally:
        connection.stop()
        await task
        server.close()
        await server.wait_closed()
    return reports, backoff.calls[: PROMPT + 1]


PONG = b'{"cmd":"pong"}'


class _OverTheLimit(picows.WSListener):
    """A venue that sends a frame, one over the client's limit and one more; when the client's
    close (1009) comes, one more again. The read that brings that one also brings the rest of
    the refused frame, inside the delay picows leaves before it disconnects."""

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        transport.send(picows.WSMsgType.TEXT, PONG)
        transport.send(picows.WSMsgType.TEXT, b"x" * OVERSIZE)
        transport.send(picows.WSMsgType.TEXT, PONG)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            transport.send(picows.WSMsgType.TEXT, PONG)
            transport.disconnect()


class _OneConnection(_Reports):
    """Notes what the connection reports until its first connection has ended."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[Exception] = []  # what the feed would stop the recorder with

    def on_disconnected(self, reason: str) -> None:
        super().on_disconnected(reason)
        self.enough.set()


@pytest.mark.parametrize("listener", ["sink", "python"])
def test_nothing_from_a_frame_over_the_limit_on_is_taken(tmp_path: Path, listener: str) -> None:
    # picows refuses the frame from its header (close 1009) but, once the rest of it and more
    # have come before it disconnects, hands them over all the same. The connection ended at
    # that frame: taken, the frame would be recorded although refused (and its seq counted as
    # skipped), and the frames after it would carry the stream past the refused seq, so the
    # next connection's resume would no longer meet it and its stream would not be found.
    with Journal.open(tmp_path / "journal", fsync=FsyncMode.NONE) as journal:
        reports = asyncio.run(_run_against_a_frame_over_the_limit(journal, listener == "sink"))
    told = [what for what, _ in reports.calls if what != "frame"]
    assert told == ["connected", "oversized", "disconnected"]
    if listener == "sink":
        frames = [record.payload for record in read_journal(tmp_path / "journal")]
    else:
        frames = [payload for what, payload in reports.calls if what == "frame"]
    assert frames == [PONG]


async def _run_against_a_frame_over_the_limit(journal: Journal, sink: bool) -> _OneConnection:
    server = await picows.ws_create_server(lambda request: _OverTheLimit(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reports = _OneConnection()
    feed = Feed(
        journal,
        TickDBAdapter(),
        FsyncMode.NONE,
        fail=reports.errors.append,
        wake_applier=lambda: None,
        stop_reading=lambda: None,
    )
    url = f"ws://127.0.0.1:{port}/"
    connection = Connection(
        url, url, reports, max_frame_bytes=OVERSIZE - 1, listener=feed.listener if sink else None
    )
    await _run_until(reports.enough, connection, server)
    assert reports.errors == []
    return reports
