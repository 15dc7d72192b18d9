"""The venue connection: picows client, reconnect with backoff, heartbeat and stall watchdog.

This layer owns the socket and the clock and nothing else: every frame goes straight to the
handler (which journals it before anything parses it), and every decision about what a frame
means is the handler's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import Protocol, cast

import picows

from fastfeed import defaults
from fastfeed.recorder.backoff import Backoff

__all__ = ["Activity", "Connection", "FeedHandler", "ListenerFactory"]

log = logging.getLogger("fastfeed.connection")


class FeedHandler(Protocol):
    """What the connection tells the recorder. All calls happen on the event loop thread.

    ``on_oversized`` comes just before the ``on_disconnected`` of a connection that ended on a
    frame over ``max_frame_bytes`` (close 1009), with the size its header announced if known.
    """

    def on_connected(self, connection: Connection) -> None: ...
    def on_frame(self, payload: bytes, binary: bool) -> None: ...
    def on_disconnected(self, reason: str) -> None: ...
    def on_heartbeat(self, connection: Connection) -> None: ...
    def on_oversized(self, size: int | None) -> None: ...


class _Listener(picows.WSListener):
    """picows callbacks in Python: each data message goes to the handler as bytes.

    The recorder uses the Cython sink (fastfeed/recorder/_sink.pyx) instead; this one serves
    handlers that want every frame as bytes (the connection limit tests, bench/probe.py).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._max_frame = connection.max_frame_bytes  # -1 once a frame over it came
        self.frames = 0
        self.steady = 0  # this listener knows no streams: it never counts a connection productive

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self._connection.ws_connected(transport)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        msg_type = frame.msg_type
        if frame.payload_size > self._max_frame:
            # picows hands over a frame it refused if the rest of it came before it
            # disconnected, and what followed: none of it is taken (the sink does the same).
            self._max_frame = -1
        elif frame.fin and (
            msg_type == picows.WSMsgType.TEXT or msg_type == picows.WSMsgType.BINARY
        ):
            self.frames += 1
            # get_payload_as_bytes copies: picows reuses the frame's memory after this callback.
            self._connection.data(frame.get_payload_as_bytes(), msg_type == picows.WSMsgType.BINARY)
        else:
            self._connection.ws_other_frame(transport, frame)


class Activity(Protocol):
    """A listener counts the data frames it took (the stall watchdog reads the count) and
    those that continued a known stream (a productive connection: reconnect promptly)."""

    frames: int
    steady: int


ListenerFactory = Callable[["Connection"], picows.WSListener]


class Connection:
    """Keeps one WebSocket connection to the venue alive until ``stop()``.

    Reconnects forever: promptly after a productive connection (its listener took data that
    continued a known stream, so it subscribed and delivered), with capped exponential backoff
    and full jitter after any failure to connect, handshake, subscribe or deliver. Sends an
    app-level ping every
    ``ping_interval_s`` and drops a connection that delivered no frame for ``stall_timeout_s``.
    """

    def __init__(
        self,
        url: str,
        log_url: str,
        handler: FeedHandler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        ping_interval_s: float = defaults.PING_INTERVAL_S,
        stall_timeout_s: float = defaults.STALL_TIMEOUT_S,
        backoff: Backoff | None = None,
        max_frame_bytes: int = defaults.MAX_FRAME_BYTES,
        max_pending_bytes: int = defaults.MAX_PENDING_OUTBOUND_BYTES,
        listener: ListenerFactory | None = None,
    ) -> None:
        self._url = url
        self._log_url = log_url  # the URL with the key redacted: the only one that is logged
        self._handler = handler
        self._ssl = ssl_context
        self._ping_interval = ping_interval_s
        self._stall_timeout = stall_timeout_s
        self._backoff = backoff or Backoff()
        self._max_frame = max_frame_bytes
        self._max_pending = max_pending_bytes
        self._make_listener: ListenerFactory = listener or _Listener
        self._listener: Activity | None = None
        self._control_frames = 0  # control frames and fragments: activity besides the listener's
        self._fragments: list[bytes] = []
        self._fragment_binary = False
        self._transport: picows.WSTransport | None = None
        self._stopping = asyncio.Event()
        self._close_reason = ""
        self._oversized_run = 0  # connections in a row that ended on a frame over the limit
        self.reconnects = 0
        self.connected = False

    @property
    def max_frame_bytes(self) -> int:
        """picows' frame limit: a frame over it ends the connection, and is not taken."""
        return self._max_frame

    # -- used by the handler ------------------------------------------------------------------
    def send(self, payload: bytes) -> bool:
        """Send one text frame; False when there is no open connection to send it on.

        A venue that stops reading makes our commands pile up in the transport's buffer:
        past ``max_pending_bytes`` the connection is dropped (the reconnect resumes).
        """
        transport = self._transport
        if transport is None or not self.connected:
            return False
        pending = transport.underlying_transport.get_write_buffer_size()
        if pending + len(payload) > self._max_pending:
            log.error(
                "%d bytes of commands not yet sent to %s (limit %d): the venue stopped"
                " reading; dropping the connection",
                pending,
                self._log_url,
                self._max_pending,
            )
            self.drop(f"venue stopped reading: over {self._max_pending} bytes pending")
            return False
        transport.send(picows.WSMsgType.TEXT, payload)
        return True

    def send_ping(self) -> None:
        """Send a WebSocket ping frame (RFC 6455 §5.5.2) for venues without an app-level ping;
        its pong is a frame like any other to the stall watchdog."""
        if self._transport is not None and self.connected:
            self._transport.send_ping()

    def drop(self, reason: str) -> None:
        """Abort the current connection (a reconnect follows unless stopping)."""
        if self._transport is not None and self.connected:
            self._close_reason = reason
            self._transport.disconnect(graceful=False)

    def stop_reading(self) -> None:
        """Stop taking data from the socket: the first step of a graceful shutdown."""
        if self._transport is not None:
            self._transport.underlying_transport.pause_reading()

    def stop(self) -> None:
        """Ask ``run`` to close the connection and return."""
        self._stopping.set()
        if self._transport is not None and self.connected:
            self._close_reason = "shutdown"
            self._transport.send_close(picows.WSCloseCode.OK)
            self._transport.disconnect()

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, serve, reconnect; returns after ``stop()``."""
        while not self._stopping.is_set():
            productive = False
            try:
                transport, listener = await picows.ws_connect(
                    lambda: self._make_listener(self),
                    self._url,
                    ssl_context=self._ssl,
                    max_frame_size=self._max_frame,
                    websocket_handshake_timeout=self._stall_timeout,
                    logger_name="fastfeed.picows",
                )
            except (TimeoutError, OSError, picows.WSError) as exc:
                self._connect_failed(_describe(exc))
            else:
                if transport.response is None:
                    # picows returns a transport when the peer closes before answering the
                    # upgrade (seen with picows 2.3): no handshake, so never "connected".
                    self._connect_failed("closed before the WebSocket handshake")
                else:
                    self._listener = cast(Activity, listener)  # both listeners count frames
                    oversized = await self._serve(transport)
                    # Subscribed and delivering: the sink took data continuing a known stream.
                    steady = self._listener.steady > 0
                    # A frame over the limit was data too, which the handler finds and skips
                    # in a few connections, each ending on it: those reconnect promptly too.
                    self._oversized_run = self._oversized_run + 1 if oversized else 0
                    prompt = 0 < self._oversized_run <= defaults.OVERSIZED_PROMPT_RECONNECTS
                    productive = steady or prompt
            if self._stopping.is_set():
                return
            delay = self._backoff.after_data() if productive else self._backoff.next_delay()
            self.reconnects += 1
            log.info("reconnecting to %s in %.2f s", self._log_url, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _connect_failed(self, why: str) -> None:
        self._handler.on_disconnected(f"connect failed: {why}")
        log.warning("cannot connect to %s: %s", self._log_url, why)

    async def _serve(self, transport: picows.WSTransport) -> bool:
        """Serve one connection until it ends; True when it ended on a frame over the limit."""
        oversized = False
        self._transport = transport
        self._close_reason = ""
        self.connected = True
        log.info("connected to %s", self._log_url)
        self._handler.on_connected(self)
        heartbeat = asyncio.create_task(self._heartbeat(transport), name="heartbeat")
        try:
            await transport.wait_disconnected()
        except picows.WSError as exc:
            # A protocol violation (e.g. a frame over max_frame_bytes) ends this connection,
            # never the recorder: what was received before it is journaled, the rest is
            # resumed on the next connection.
            self._close_reason = f"protocol error: {_describe(exc)}"
            if getattr(exc, "code", None) == picows.WSCloseCode.MESSAGE_TOO_BIG:
                oversized = True
                self._handler.on_oversized(_announced_size(exc))
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            self.connected = False
            self._transport = None
            reason = self._close_reason or "connection lost"
            log.info("disconnected from %s: %s", self._log_url, reason)
            self._handler.on_disconnected(reason)
        return oversized

    def _activity(self) -> int:
        """Frames taken so far on this connection (no clock is read per frame)."""
        listener = self._listener
        return self._control_frames + (listener.frames if listener is not None else 0)

    async def _heartbeat(self, transport: picows.WSTransport) -> None:
        tick = min(self._ping_interval, self._stall_timeout / 2)
        last_frame = time.monotonic()
        seen = self._activity()
        next_ping = last_frame + self._ping_interval
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self._activity() != seen:
                seen = self._activity()
                last_frame = now  # some frame came within the last tick
            elif now - last_frame > self._stall_timeout:
                # One text for the log and the journaled reason, in the words /healthz uses.
                silent, limit = now - last_frame, self._stall_timeout
                why = f"no frame for {silent:.1f} s (watchdog {limit:g} s)"
                log.warning("%s: dropping the connection", why)
                self.drop(f"stalled: {why}")
                return
            if now >= next_ping:
                self._handler.on_heartbeat(self)
                next_ping = now + self._ping_interval

    # -- called by the listener (picows callbacks, on the event loop) ---------------------------
    def ws_connected(self, transport: picows.WSTransport) -> None:
        """The WebSocket handshake completed on ``transport``."""
        self._transport = transport
        sock = transport.underlying_transport.get_extra_info("socket")
        if sock is not None:
            # picows hands over all it read in one callback and grows its buffer to what the
            # socket holds (megabytes behind a fast feed): a small receive buffer keeps one
            # read, and so one turn of the event loop, to a few thousand frames, so signals,
            # heartbeats and snapshots are never held up by a backlog. Set before we subscribe.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, defaults.RECV_BUFFER_BYTES)

    def data(self, payload: bytes, binary: bool) -> None:
        """One whole data message, as bytes."""
        self._handler.on_frame(payload, binary)

    def ws_other_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        """Control frames and the parts of a fragmented message."""
        self._control_frames += 1
        msg_type = frame.msg_type
        if msg_type == picows.WSMsgType.TEXT or msg_type == picows.WSMsgType.BINARY:
            # RFC 6455 §5.4: a fragmented message starts with a non-final data frame
            self._fragments = [frame.get_payload_as_bytes()]
            self._fragment_binary = msg_type == picows.WSMsgType.BINARY
        elif msg_type == picows.WSMsgType.CONTINUATION:
            self._fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                message, self._fragments = b"".join(self._fragments), []
                self.data(message, self._fragment_binary)
        elif msg_type == picows.WSMsgType.CLOSE:
            self._close_reason = (
                f"venue closed the connection (code {frame.get_close_code().value})"
            )
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif msg_type == picows.WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# picows 2.3 refuses a data frame from its header, before any payload is read, with
# WSProtocolError(MESSAGE_TOO_BIG, "... exceeding max allowed size, {length} > {max_frame_size}")
# (picows.pyx, WSProtocol._get_next_frame_impl): the announced length is only in that text.
_ANNOUNCED = re.compile(r"(\d+) > \d+\s*$")


def _announced_size(exc: picows.WSError) -> int | None:
    """The payload length a refused frame's header announced, if picows said it."""
    match = _ANNOUNCED.search(str(exc.args[-1])) if exc.args else None
    return int(match.group(1)) if match else None
