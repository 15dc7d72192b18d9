"""The simulator server: picows on loopback, global streams, a rate ticker, standalone entry point.

Streams are global to the server: one configured with ``SimConfig.streams`` publishes from server
start; any other starts (head 0) when a client first subscribes to it. From then on its head
advances with time (``rate * elapsed``) whether or not anyone is subscribed, so a client that
reconnects with ``resume`` gets exactly the seqs it missed. In burst mode heads advance only
when a subscriber has caught up and its socket takes more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable
from urllib.parse import parse_qs

import uvloop
from picows import (
    WSListener,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from fastfeed.defaults import SIM_BURST_BATCH, SIM_HOST, SIM_TICK_S
from fastfeed.sim.config import SimConfig, sim_config_from_args
from fastfeed.sim.faults import ConnectionFaults, FaultPlan
from fastfeed.sim.history import Stream, StreamSource, StreamTable
from fastfeed.sim.session import Session
from fastfeed.sim.wire import negotiate_deflate

__all__ = ["PATH", "SimServer", "main_sim", "serve", "serve_until_signalled"]

log = logging.getLogger("fastfeed.sim")
PATH = "/v1/realtime"
_HTTP_UNAVAILABLE = 503


def _has_frame_faults(plan: FaultPlan) -> bool:
    return (
        plan.abort_after is not None
        or plan.close_after is not None
        or plan.stall_after is not None
        or bool(plan.skip_rate or plan.duplicate_rate or plan.reorder_rate or plan.garbage_rate)
    )


class SimServer:
    """A running simulator: its address, its streams, and counters for tests."""

    def __init__(self, config: SimConfig, source: StreamSource | None = None) -> None:
        """Serve generated streams, or those of ``source`` (then only in burst mode)."""
        self.config = config
        self.host = ""
        self.port = 0
        self._generated: StreamTable | None = None
        if source is None:
            source = self._generated = StreamTable(
                config.seed,
                plain=config.plain_tickdb,
                depth_levels=config.depth_levels,
                max_messages=config.history_messages,
                max_bytes=config.history_bytes,
                start_seq=config.start_seq,
            )
        self.table: StreamSource = source
        self.sessions: set[Session] = set()  # connections past the handshake
        self.attempts = 0  # upgrade requests on the endpoint path
        self.accepted = 0  # connections given a listener
        self.refused = 0  # attempts answered 503 by the fault plan
        self.slow_drops = 0  # connections dropped for lagging
        self.frames_sent = 0
        self._loop = asyncio.get_running_loop()
        self._started_at = self._loop.time()
        self._frame_faults = _has_frame_faults(config.faults)
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind, start the configured streams and the publisher."""
        self._server = await ws_create_server(
            self._accept,
            host,
            port,
            enable_auto_pong=False,  # the stall fault must be able to withhold pongs
            max_frame_size=self.config.max_frame_bytes,
            logger_name="sim",
        )
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        now = self._loop.time()
        for channel, symbol in self.config.streams:
            self.table.get_or_create(channel, symbol, now)
        self._ticker = asyncio.create_task(self._tick(), name="sim-ticker")

    # -- introspection -------------------------------------------------------------------------
    def head_seq(self, channel: str, symbol: str) -> int:
        """The last seq published on a stream (0 if it has not started)."""
        stream = self.table.get(channel, symbol)
        return 0 if stream is None else stream.history.head_seq

    def first_seq(self, channel: str, symbol: str) -> int:
        """The oldest seq still held for resume (1 if the stream has not started)."""
        stream = self.table.get(channel, symbol)
        return 1 if stream is None else stream.history.first_seq

    # -- publishing ----------------------------------------------------------------------------
    # -- SessionHost: what sessions report ----------------------------------------------------
    def session_opened(self, session: Session) -> None:
        """A session completed its handshake: it takes part in publishing from now on."""
        self.sessions.add(session)

    def session_closed(self, session: Session) -> None:
        """A session's connection is gone."""
        self.sessions.discard(session)

    def session_dropped(self, session: Session) -> None:
        """A session is being dropped for lagging."""
        self.slow_drops += 1

    def frames_written(self, count: int) -> None:
        """Frames handed to a transport (for tests and benchmarks)."""
        self.frames_sent += count

    def publish(self, stream: Stream, source: Session | None = None) -> None:
        """Burst mode: advance one stream by a batch and wake its other subscribers."""
        self.table.advance(stream, SIM_BURST_BATCH)
        key = (stream.channel, stream.symbol)
        for session in self.sessions:
            if session is not source and key in session.subs:
                session.schedule_pump()

    async def _tick(self) -> None:
        """Rate mode: publish what fell due on every stream; both modes: drop laggards."""
        rate = self.config.rate
        limit = self.config.max_client_buffer
        while True:
            await asyncio.sleep(SIM_TICK_S)
            if not self.config.burst and self._generated is not None:
                self._generated.publish_due(self._loop.time(), rate)
            for session in list(self.sessions):
                if session.stalled:
                    continue  # a stall fault is deliberate, not a slow reader
                lag = session.lag_bytes()
                if lag > limit:
                    session.drop(f"slow reader: {lag} bytes behind (limit {limit})")
                else:
                    session.schedule_pump()

    # -- connections ---------------------------------------------------------------------------
    def _accept(
        self, request: WSUpgradeRequest
    ) -> WSListener | WSUpgradeResponseWithListener | None:
        path, _, query = request.path.decode("latin-1").partition("?")
        if path != PATH:
            return None  # picows answers 404
        self.attempts += 1
        plan = self.config.faults
        if (
            self.attempts <= plan.refuse_connections
            or self._loop.time() - self._started_at < plan.refuse_s
        ):
            self.refused += 1
            response = WSUpgradeResponse.create_error_response(
                _HTTP_UNAVAILABLE, b"refused by the simulator's fault plan"
            )
            return WSUpgradeResponseWithListener(response, None)
        keys = parse_qs(query).get("api_key", [])
        key_ok = self.config.api_key is None or keys == [self.config.api_key]
        index = self.accepted
        self.accepted += 1
        negotiated = None
        if self.config.deflate:
            negotiated = negotiate_deflate(request.headers.get("Sec-WebSocket-Extensions"))
        faults = None
        if self._frame_faults and plan.applies_to(index):
            faults = ConnectionFaults(plan, index)
        session = Session(
            self,
            index,
            key_ok=key_ok,
            deflate=None if negotiated is None else negotiated[1],
            faults=faults,
        )
        if negotiated is None:
            return session
        headers = {"Sec-WebSocket-Extensions": negotiated[0]}
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(headers), session
        )

    async def close(self) -> None:
        """Stop publishing, drop every client, stop listening."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            self._server.close()
            for session in list(self.sessions):
                session.abort()
            await self._server.wait_closed()
            self._server = None


async def serve(config: SimConfig, *, host: str = SIM_HOST, port: int = 0) -> SimServer:
    """Start a simulator on ``host:port`` (0: any free port) and return it running."""
    server = SimServer(config)
    await server.start(host, port)
    return server


async def serve_until_signalled(server: Awaitable[SimServer], name: str) -> int:
    """Start ``server``, print its URL on stdout and serve until SIGINT or SIGTERM; exit code.

    The URL goes to stdout so a script that passed --port 0 can find the port.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = await server
    shown = f"[{running.host}]" if ":" in running.host else running.host
    print(f"fastfeed {name} listening on ws://{shown}:{running.port}{PATH}", flush=True)
    try:
        await stop.wait()
    finally:
        await running.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("%s stopped", name)
    return 0


def main_sim(ns: argparse.Namespace) -> int:
    """``fastfeed sim``: serve until SIGINT/SIGTERM; returns the exit code."""
    config = sim_config_from_args(ns)
    return uvloop.run(serve_until_signalled(serve(config, host=ns.host, port=ns.port), "sim"))
