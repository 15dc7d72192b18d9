"""The venue connection: picows client, reconnect with backoff, heartbeat and stall watchdog.

This layer owns the socket and the clock and nothing else: every frame goes straight to the
handler (which journals it before anything parses it), and every decision about what a frame
means is the handler's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from typing import Protocol

import picows

from fastfeed import defaults
from fastfeed.recorder.backoff import Backoff

__all__ = ["Connection", "FeedHandler"]

log = logging.getLogger("fastfeed.connection")


class FeedHandler(Protocol):
    """What the connection tells the recorder. All calls happen on the event loop thread."""

    def on_connected(self, connection: Connection) -> None: ...
    def on_frame(self, payload: bytes, binary: bool) -> None: ...
    def on_disconnected(self, reason: str) -> None: ...
    def on_heartbeat(self, connection: Connection) -> None: ...


class _Listener(picows.WSListener):
    """picows callbacks: reassembles fragmented messages and hands each one over at once."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._fragments: list[bytes] = []
        self._fragment_binary = False

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self._connection._transport = transport
        sock = transport.underlying_transport.get_extra_info("socket")
        if sock is not None:
            # picows hands over all it read in one callback and grows its buffer to what the
            # socket holds (megabytes behind a fast feed): a small receive buffer keeps one
            # read, and so one turn of the event loop, to a few thousand frames, so signals,
            # heartbeats and snapshots are never held up by a backlog. Set before we subscribe.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, defaults.RECV_BUFFER_BYTES)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == picows.WSMsgType.TEXT or msg_type == picows.WSMsgType.BINARY:
            # get_payload_as_bytes copies: picows reuses the frame's memory after this callback.
            payload = frame.get_payload_as_bytes()
            binary = msg_type == picows.WSMsgType.BINARY
            if frame.fin:
                self._connection._frame(payload, binary)
            else:  # RFC 6455 §5.4: a fragmented message starts with a non-final data frame
                self._fragments = [payload]
                self._fragment_binary = binary
        elif msg_type == picows.WSMsgType.CONTINUATION:
            self._fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                message, self._fragments = b"".join(self._fragments), []
                self._connection._frame(message, self._fragment_binary)
        elif msg_type == picows.WSMsgType.CLOSE:
            self._connection._close_reason = (
                f"venue closed the connection (code {frame.get_close_code().value})"
            )
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif msg_type == picows.WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        self._connection._last_frame = time.monotonic()


class Connection:
    """Keeps one WebSocket connection to the venue alive until ``stop()``.

    Reconnects forever: promptly after a connection the handler marked productive (subscribed
    and delivering), with capped exponential backoff and full jitter after any failure to
    connect, handshake, subscribe or deliver. Sends an app-level ping every
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
    ) -> None:
        self._url = url
        self._log_url = log_url  # the URL with the key redacted: the only one that is logged
        self._handler = handler
        self._ssl = ssl_context
        self._ping_interval = ping_interval_s
        self._stall_timeout = stall_timeout_s
        self._backoff = backoff or Backoff()
        self._productive = False  # this connection delivered market data (mark_productive)
        self._max_frame = max_frame_bytes
        self._max_pending = max_pending_bytes
        self._transport: picows.WSTransport | None = None
        self._stopping = asyncio.Event()
        self._close_reason = ""
        self._last_frame = 0.0
        self.reconnects = 0
        self.connected = False

    # -- used by the handler ------------------------------------------------------------------
    def mark_productive(self) -> None:
        """This connection subscribed and delivered market data: reconnect promptly after it."""
        self._productive = True

    @property
    def productive(self) -> bool:
        """Whether ``mark_productive`` was called on the current (or last) connection."""
        return self._productive

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
            self._productive = False
            try:
                transport, _ = await picows.ws_connect(
                    lambda: _Listener(self),
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
                    await self._serve(transport)
            if self._stopping.is_set():
                return
            delay = self._backoff.after_data() if self._productive else self._backoff.next_delay()
            self.reconnects += 1
            log.info("reconnecting to %s in %.2f s", self._log_url, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _connect_failed(self, why: str) -> None:
        self._handler.on_disconnected(f"connect failed: {why}")
        log.warning("cannot connect to %s: %s", self._log_url, why)

    async def _serve(self, transport: picows.WSTransport) -> None:
        self._transport = transport
        self._close_reason = ""
        self._last_frame = time.monotonic()
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
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            self.connected = False
            self._transport = None
            reason = self._close_reason or "connection lost"
            log.info("disconnected from %s: %s", self._log_url, reason)
            self._handler.on_disconnected(reason)

    async def _heartbeat(self, transport: picows.WSTransport) -> None:
        tick = min(self._ping_interval, self._stall_timeout / 2)
        next_ping = time.monotonic() + self._ping_interval
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - self._last_frame > self._stall_timeout:
                # One text for the log and the journaled reason, in the words /healthz uses.
                silent, limit = now - self._last_frame, self._stall_timeout
                why = f"no frame for {silent:.1f} s (watchdog {limit:g} s)"
                log.warning("%s: dropping the connection", why)
                self.drop(f"stalled: {why}")
                return
            if now >= next_ping:
                self._handler.on_heartbeat(self)
                next_ping = now + self._ping_interval

    def _frame(self, payload: bytes, binary: bool) -> None:
        self._handler.on_frame(payload, binary)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
