"""One simulator session (the server side of one connection): commands in, acks and pre-framed
pushes out, under flow control.

The session knows its server only through ``SessionHost``: the configuration, the streams, and
four calls that tell the server what happened (it never changes the server's state itself).

Every subscription is a cursor (``next_seq``) into its stream's history. A *pump* writes the
history from each cursor up to the head in chunks, one transport write per pump, and stops while
the transport is paused (``pause_writing``). Replay and live delivery are the same path, so a
resumed stream is sent in order without duplicates, and nothing is buffered per connection
beyond the transport's high-water mark plus one chunk: a reader that falls behind lags in the
shared history and is dropped (close 1008, logged) past ``max_client_buffer`` bytes of lag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import orjson
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from fastfeed.defaults import (
    SIM_BURST_CHUNKS_PER_TURN,
    SIM_SLOW_CLOSE_GRACE_S,
    SIM_WRITE_CHUNK_BYTES,
    SIM_WRITE_HIGH_WATER,
)
from fastfeed.sim.commands import Error, Ping, Subscribe, Unsubscribe, interpret, read_command
from fastfeed.sim.config import SimConfig
from fastfeed.sim.content import stamp
from fastfeed.sim.faults import Action, ConnectionFaults, oversize_pushes
from fastfeed.sim.history import Stream, StreamSource
from fastfeed.sim.wire import OP_TEXT, Deflate, frame_header
from fastfeed.venues.tickdb import CODE_BAD_REQUEST, CODE_INVALID_KEY, CODE_RATE_LIMITED

__all__ = ["Session", "SessionHost"]

log = logging.getLogger("fastfeed.sim")
_PONG = b'{"cmd":"pong"}'
_FRAGMENTED = Error("error", CODE_BAD_REQUEST, "fragmented messages are not supported")


class _Cursor:
    """A subscription: the stream and the next seq this connection will be sent."""

    __slots__ = ("next_seq", "stream")

    def __init__(self, stream: Stream, next_seq: int) -> None:
        self.stream = stream
        self.next_seq = next_seq


class SessionHost(Protocol):
    """What a session needs of the server that accepted it; every call is on the event loop."""

    config: SimConfig
    table: StreamSource

    def session_opened(self, session: Session) -> None:
        """The WebSocket handshake completed: ``session`` now receives publish wake-ups."""

    def session_closed(self, session: Session) -> None:
        """The connection is gone."""

    def session_dropped(self, session: Session) -> None:
        """``session`` is being dropped for lagging (counted)."""

    def frames_written(self, count: int) -> None:
        """``count`` frames were handed to a transport (counted)."""

    def publish(self, stream: Stream, source: Session | None = None) -> None:
        """Burst mode: advance ``stream`` and wake its subscribers other than ``source``."""


class Session(WSListener):
    """The server side of one WebSocket connection."""

    def __init__(
        self,
        server: SessionHost,
        index: int,
        *,
        key_ok: bool,
        deflate: Deflate | None,
        faults: ConnectionFaults | None,
    ) -> None:
        super().__init__()
        self.server = server
        self.index = index
        self.subs: dict[tuple[str, str], _Cursor] = {}
        self.transport: WSTransport | None = None
        self.stalled = False
        self._key_ok = key_ok
        self._deflate = deflate
        self._faults = faults
        self._loop = asyncio.get_running_loop()
        self._paused = False
        self._closing = False
        self._scheduled = False
        self._held: list[bytes] = []  # replies held while stalled, sent when the stall ends
        self._timer: asyncio.TimerHandle | None = None
        self._window_start = 0.0
        self._window_count = 0

    # -- picows callbacks ----------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.underlying_transport.set_write_buffer_limits(high=SIM_WRITE_HIGH_WATER)
        self.server.session_opened(self)
        if not self._key_ok:
            # TickDB: a bad key gets an error, then the server closes.
            self._reply({"cmd": "error", "code": CODE_INVALID_KEY, "message": "Invalid API key"})
            self.close(WSCloseCode.POLICY_VIOLATION, "invalid api key")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closing = True
        self.server.session_closed(self)
        if self._timer is not None:
            self._timer.cancel()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.schedule_pump()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.PING:
            if not self.stalled:
                transport.send_pong(frame.get_payload_as_bytes())
        elif kind is WSMsgType.CLOSE:
            self.close(WSCloseCode.OK, "")
        elif kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if not frame.fin:
                self._reply(_FRAGMENTED.doc())
                return
            payload = frame.get_payload_as_bytes()
            if frame.rsv1:
                if self._deflate is None:
                    self.close(WSCloseCode.PROTOCOL_ERROR, "RSV1 set without permessage-deflate")
                    return
                try:
                    payload = self._deflate.decompress(payload, self.server.config.max_frame_bytes)
                except ValueError as exc:
                    self.close(WSCloseCode.MESSAGE_TOO_BIG, str(exc)[:100])
                    return
            self._command(payload)
        elif kind is WSMsgType.CONTINUATION:
            self._reply(_FRAGMENTED.doc())

    # -- commands (decided in fastfeed/sim/commands.py, carried out here) ---------------------
    def _command(self, payload: bytes) -> None:
        parsed = read_command(payload)
        if isinstance(parsed, Error):
            self._reply(parsed.doc())
            return
        cmd, doc = parsed
        now = self._loop.time()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        config = self.server.config
        if self._window_count > config.commands_per_s:
            self._reply(Error(cmd, CODE_RATE_LIMITED, "Rate limit exceeded").doc())
            return
        plan = config.faults
        outcome = interpret(
            cmd,
            doc,
            plain=config.plain_tickdb,
            reject_symbols=plan.reject_symbols,
            reject_code=plan.reject_code,
        )
        if isinstance(outcome, Error):
            self._reply(outcome.doc())
        elif isinstance(outcome, Ping):
            if not self.stalled:
                self._write_frames([(OP_TEXT, _PONG)])
        elif isinstance(outcome, Unsubscribe):
            for symbol in outcome.symbols:
                self.subs.pop((outcome.channel, symbol), None)
            self._reply({"cmd": cmd, "code": 0, "message": "success", "data": outcome.echo})
        else:
            self._subscribe(outcome)

    def _subscribe(self, sub: Subscribe) -> None:
        now = self._loop.time()
        streams: dict[str, dict[str, int]] = {}
        for symbol in sub.symbols:
            stream = self.server.table.get_or_create(sub.channel, symbol, now)
            history = stream.history
            head = history.head_seq
            want = sub.resume.get(symbol)
            # Without resume: the next live message. With it: the seq asked, raised to the oldest
            # seq still held (the difference is an unrecoverable gap) and capped at head + 1.
            first = head + 1 if want is None else min(max(want, history.first_seq), head + 1)
            self.subs[(sub.channel, symbol)] = _Cursor(stream, first)
            streams[symbol] = {"first_seq": first, "head_seq": head}
        echo = dict(sub.echo)
        if not self.server.config.plain_tickdb:
            echo["streams"] = streams
        self._reply({"cmd": "subscribe", "code": 0, "message": "success", "data": echo})
        self.schedule_pump()

    # -- output --------------------------------------------------------------------------------
    def _reply(self, doc: dict[str, Any]) -> None:
        payload = orjson.dumps(doc)
        if self.stalled:
            self._held.append(payload)
        else:
            self._write_frames([(OP_TEXT, payload)])

    def _write_frames(self, frames: list[tuple[int, bytes]]) -> None:
        """Frame, compress if negotiated, and write everything in one transport write."""
        if self._closing or self.transport is None or not frames:
            return
        if self.transport.underlying_transport.is_closing():
            self._closing = True  # the peer went away; on_ws_disconnected follows
            return
        parts: list[bytes] = []
        deflate = self._deflate
        for opcode, payload in frames:
            if deflate is not None:
                payload = deflate.compress(payload)
            parts.append(frame_header(opcode, len(payload), compressed=deflate is not None))
            parts.append(payload)
        self.transport.underlying_transport.write(b"".join(parts))
        self.server.frames_written(len(frames))

    def schedule_pump(self) -> None:
        """Run the pump soon (once, however many times it is asked before it runs)."""
        if not self._scheduled and not self._closing and self.subs:
            self._scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._scheduled = False
        # Burst mode writes until the socket stops taking data (pause_writing) or a bound per
        # turn, and is woken again by resume_writing or the ticker: rescheduling itself with
        # call_soon for ever would starve the rest of the loop on a socket that never pauses.
        for _ in range(SIM_BURST_CHUNKS_PER_TURN if self.server.config.burst else 1):
            if self._closing or self._paused or self.stalled or not self._pump_once():
                return

    def _pump_once(self) -> bool:
        """Write one chunk from every cursor; returns whether the pump should run again."""
        server = self.server
        burst = server.config.burst
        sent_ns = time.monotonic_ns() if server.config.stamp_send_time else None
        frames: list[tuple[int, bytes]] = []
        action = Action.NONE
        more = False
        for cursor in list(self.subs.values()):
            stream = cursor.stream
            history = stream.history
            if burst and cursor.next_seq > history.head_seq:
                server.publish(stream, self)
            if cursor.next_seq < history.first_seq:
                self.drop(f"fell behind the history of {stream.channel}:{stream.symbol}")
                return False
            limit = max(1, int(SIM_WRITE_CHUNK_BYTES // max(history.mean_size(), 1.0)))
            batch = history.slice(cursor.next_seq, limit)
            if not batch:
                continue
            if server.config.faults.oversize_pushes:
                batch = oversize_pushes(
                    server.config.faults, stream.channel, stream.symbol, cursor.next_seq, batch
                )
            if sent_ns is not None:
                batch = [stamp(m, sent_ns) for m in batch]
            if self._faults is None:
                frames.extend([(OP_TEXT, m) for m in batch])
                consumed = len(batch)
            else:
                consumed, action = self._faults.shape(batch, frames)
            cursor.next_seq += consumed
            more = more or cursor.next_seq <= history.head_seq
            if action is not Action.NONE:
                break
        self._write_frames(frames)
        if action is not Action.NONE:
            self._act(action)
            return False
        if more and not burst:
            self.schedule_pump()
        return burst

    def _act(self, action: Action) -> None:
        assert self._faults is not None and self.transport is not None
        sent = self._faults.sent
        if action is Action.ABORT:
            log.info("fault: aborting connection %d after %d frames", self.index, sent)
            self._closing = True
            self.transport.underlying_transport.abort()
        elif action is Action.CLOSE:
            log.info("fault: closing connection %d after %d frames", self.index, sent)
            self.close(WSCloseCode.SERVICE_RESTART, f"fault: close after {sent} frames")
        else:
            stall_s = self._faults.plan.stall_s
            log.info("fault: stalling connection %d for %.3f s", self.index, stall_s)
            self.stalled = True
            self._timer = self._loop.call_later(stall_s, self._end_stall)

    def _end_stall(self) -> None:
        self.stalled = False
        held, self._held = self._held, []
        self._write_frames([(OP_TEXT, p) for p in held])
        self.schedule_pump()

    # -- lifecycle -----------------------------------------------------------------------------
    def lag_bytes(self) -> int:
        """Bytes this connection is behind: unsent history plus the transport's buffer."""
        lag = 0.0
        for cursor in self.subs.values():
            history = cursor.stream.history
            behind = history.head_seq - cursor.next_seq + 1
            if behind > 0:
                lag += behind * history.mean_size()
        if self.transport is not None:
            lag += self.transport.underlying_transport.get_write_buffer_size()
        return int(lag)

    def drop(self, reason: str) -> None:
        """Drop a reader that cannot keep up: log it, tell it (close 1008), abort if it lingers."""
        log.warning("dropping connection %d: %s", self.index, reason)
        self.server.session_dropped(self)
        self.close(WSCloseCode.POLICY_VIOLATION, reason[:120])
        self._timer = self._loop.call_later(SIM_SLOW_CLOSE_GRACE_S, self.abort)

    def close(self, code: WSCloseCode, reason: str) -> None:
        """Send a close frame after what is already written, then disconnect."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        self.transport.send_close(code, reason.encode())
        self.transport.disconnect(graceful=True)

    def abort(self) -> None:
        """Drop the TCP connection now, without a close frame."""
        self._closing = True
        if self.transport is not None:
            self.transport.underlying_transport.abort()
