"""`--metrics ADDR:PORT`: Prometheus text exposition at /metrics and a health check at /healthz.

Nothing here runs per frame. The collector reads, at scrape time, the counters the recorder,
pipeline and journal keep anyway. The server runs on the recorder's event loop, so a scrape reads
one consistent moment of state without locks (the journal's commit-time histogram, written by
its commit thread, is copied atomically); only turning it into text runs on a worker thread.
Each metric is described in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from fastfeed import defaults
from fastfeed.derive.pipeline import Pipeline, StreamCounts
from fastfeed.derive.streams import StreamKey
from fastfeed.errors import ConfigError, FastfeedError
from fastfeed.journal import Journal
from fastfeed.recorder.statusline import Status

__all__ = ["MetricsServer", "RecorderCollector", "health_problem", "make_registry", "parse_listen"]

log = logging.getLogger("fastfeed.recorder.metrics")

_STREAM = ("channel", "symbol")
# What generate_latest writes: the classic text format every Prometheus server reads.
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def parse_listen(value: str) -> tuple[str, int]:
    """``9464`` -> (METRICS_HOST, 9464); ``ADDR:PORT`` and ``[v6]:PORT`` as given.

    Raises:
        ConfigError: not a port, or not an IP address and a port.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = defaults.METRICS_HOST, value
    host = host.removeprefix("[").removesuffix("]")
    expected = "expected PORT or ADDR:PORT, e.g. 9464 or 0.0.0.0:9464"
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"bad metrics address {value!r}: {expected}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"bad metrics port {port} in {value!r}: expected 0..65535")
    return host, port


def health_problem(
    status: Status,
    down_for_s: float,
    watchdog_s: float,
    max_lag: int,
    silent_for_s: float = 0.0,
    max_silence_s: float = defaults.HEALTH_MAX_DATA_SILENCE_S,
) -> str | None:
    """Why the recorder is unhealthy, or None: down past the watchdog, connected but no market
    data past ``max_silence_s`` (``silent_for_s``), or SQLite too far behind."""
    if down_for_s > watchdog_s:
        return f"connection down for {down_for_s:.1f} s (watchdog {watchdog_s:g} s)"
    if silent_for_s > max_silence_s:
        return f"connected, but no market data for {silent_for_s:.0f} s (limit {max_silence_s:g} s)"
    lag = status.accepted_lsn - status.applied_lsn
    if lag > max_lag:
        return f"snapshot lag {lag} records exceeds {max_lag}"
    return None


class RecorderCollector(Collector):
    """Every fastfeed_* metric, built from the recorder's own counters at each scrape."""

    def __init__(self, status: Callable[[], Status], pipeline: Pipeline, journal: Journal) -> None:
        self._status = status
        self._pipeline = pipeline
        self._journal = journal
        self._start_lsn = journal.accepted_lsn  # records journaled count from here

    def collect(self) -> Iterator[Metric]:
        s = self._status()
        yield _counter("frames_received", "WebSocket messages received", s.frames)
        yield _counter(
            "records_journaled",
            "Journal records appended (frames, commands sent, connection events)",
            s.accepted_lsn - self._start_lsn,
        )
        yield _gauge("journal_accepted_lsn", "Last LSN appended (survives kill -9)", s.accepted_lsn)
        yield _gauge("journal_durable_lsn", "Last LSN synced to disk", s.durable_lsn)
        yield _gauge("snapshot_applied_lsn", "Last LSN committed to SQLite", s.applied_lsn)
        yield _gauge(
            "snapshot_lag_records",
            "Journal accepted LSN minus SQLite applied LSN",
            s.accepted_lsn - s.applied_lsn,
        )
        buckets, total = self._journal.commit_seconds.snapshot()
        cumulative, running = [], 0
        for bound, count in zip(
            (*self._journal.commit_seconds.bounds, "+Inf"), buckets, strict=True
        ):
            running += count
            cumulative.append((str(bound), running))
        yield HistogramMetricFamily(
            "fastfeed_journal_commit_seconds",
            "Time one journal commit took to sync what was appended since the last",
            buckets=cumulative,
            sum_value=total,
        )
        yield _counter(
            "journal_fsync_errors", "Failed journal syncs (fatal)", self._journal.sync_errors
        )
        yield _counter("reconnects", "Reconnect attempts after a connection ended", s.reconnects)
        yield _gauge("connection_up", "1 while the venue connection is open", int(s.connected))
        yield _counter(
            "malformed_frames", "Frames the venue adapter could not read (kept)", s.malformed
        )
        yield _counter(
            "oversized_frames",
            "Frames over the size limit, skipped (the seq each held is a lost gap)",
            self._pipeline.oversized,
        )
        yield from self._streams()

    def _streams(self) -> Iterator[Metric]:
        pipeline = self._pipeline
        counts: dict[StreamKey, StreamCounts] = {c.key: c for c in pipeline.stream_counts()}
        tally = pipeline.gap_tally.by_stream
        keys = sorted({*pipeline.tracker_streams(), *counts, *tally})
        frames = _stream_counter("stream_frames", "Data frames received per stream")
        nbytes = _stream_counter("stream_bytes", "Payload bytes of those frames")
        opened = _stream_counter("stream_gaps_opened", "Gaps opened per stream")
        filled = _stream_counter("stream_gaps_filled", "Gaps filled by a resume")
        lost = _stream_counter("stream_gaps_lost", "Gaps the venue can no longer fill")
        still_open = GaugeMetricFamily(
            "fastfeed_stream_gaps_open", "Gaps still expected to fill", labels=_STREAM
        )
        age = GaugeMetricFamily(
            "fastfeed_stream_last_message_age_seconds",
            "Seconds since the stream's last message was received",
            labels=_STREAM,
        )
        now_ns = time.time_ns()
        for key in keys:
            labels = [key.channel, key.symbol]
            c = counts.get(key)
            frames.add_metric(labels, c.frames if c else 0)
            nbytes.add_metric(labels, c.bytes if c else 0)
            g = tally.get(key)
            opened.add_metric(labels, g.opened if g else 0)
            filled.add_metric(labels, g.filled if g else 0)
            lost.add_metric(labels, g.lost if g else 0)
            stats = pipeline.stream_stats(key)
            still_open.add_metric(labels, stats.open_gaps if stats else 0)
            if stats is not None and stats.last_recv_ns is not None:
                age.add_metric(labels, max(0, now_ns - stats.last_recv_ns) / 1e9)
        yield from (frames, nbytes, opened, filled, lost, still_open, age)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"fastfeed_{name}", doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"fastfeed_{name}", doc, value=value)


def _stream_counter(name: str, doc: str) -> CounterMetricFamily:
    return CounterMetricFamily(f"fastfeed_{name}", doc, labels=_STREAM)


def make_registry(collector: Collector) -> CollectorRegistry:
    """A registry of our own (not the global one): ``collector`` plus process_* (RSS, CPU)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


class _Collected(Collector):
    """Metric families already collected, for rendering away from the event loop."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class MetricsServer:
    """A minimal HTTP/1.1 server on the event loop: GET /metrics and /healthz, then close.

    Each connection serves one request; its task is tracked so ``close`` can end and await it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Callable[[], str | None],
    ) -> None:
        self._host, self._port = host, port
        self._registry = registry
        self._health = health
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def port(self) -> int:
        """The bound port (the one asked for, or the one the kernel chose for port 0)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and listen.

        Raises:
            FastfeedError: the port is in use: a runtime failure (exit 1), so a service manager
                restarts us and the port may be free by then.
            ConfigError: the address cannot be bound otherwise (not local, no permission).
        """
        try:
            self._server = await asyncio.start_server(
                self._on_client, self._host, self._port, limit=defaults.HTTP_MAX_HEAD_BYTES
            )
        except OSError as exc:
            text = f"cannot serve metrics on {self._host}:{self._port}: {exc.strerror or exc}"
            if exc.errno == errno.EADDRINUSE:
                raise FastfeedError(text, hint="another process holds the port") from None
            raise ConfigError(text) from None
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self._host, self.port)

    async def close(self) -> None:
        """Stop listening and end the connections being served."""
        if self._server is None:
            return
        self._server.close()
        # Closing a client's transport ends its read with EOF, so its handler returns normally
        # (a cancelled handler task makes asyncio's start_server log a spurious error).
        for writer in self._clients.values():
            writer.close()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        try:
            async with asyncio.timeout(defaults.HTTP_REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                code, content_type, body, send_body = await self._respond(head)
                writer.write(
                    f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + (body if send_body else b"")
                )
                await writer.drain()
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass  # a scraper that left or stalled: nothing to answer
        finally:
            writer.close()
            self._clients.pop(task, None)

    async def _respond(self, head: bytes) -> tuple[int, str, bytes, bool]:
        """(status code, content type, body, whether to send the body) for one request head."""
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        text = "text/plain; charset=utf-8"
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, text, b"bad request\n", True
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return 405, text, b"only GET and HEAD\n", True
        send_body = method == b"GET"
        if target == b"/metrics":
            # Read the state here, on the loop (one consistent moment); format it on a worker
            # thread: rendering is most of a scrape's cost (~30 ms for 1000 streams).
            families = _Collected(list(self._registry.collect()))
            return 200, _CONTENT_TYPE, await asyncio.to_thread(generate_latest, families), send_body
        if target == b"/healthz":
            problem = self._health()
            if problem is None:
                return 200, text, b"ok\n", send_body
            return 503, text, f"{problem}\n".encode(), send_body
        return 404, text, b"try /metrics or /healthz\n", send_body
