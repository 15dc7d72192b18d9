"""``fastfeed publish``: connect, make sure of the stream, reconcile, publish until signalled.

nats-py is imported here only (the ``publish`` extra), so the one-file app runs without it and
says how to get it when this command is asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import uvloop

from fastfeed import defaults
from fastfeed.catchup import venue_of
from fastfeed.datadir import JOURNAL_DIR, STORE_FILE, open_data_dir
from fastfeed.errors import ConfigError
from fastfeed.logs import setup_logging
from fastfeed.publish.args import NATS_ENV
from fastfeed.publish.cursor import cursor_path, load_cursor
from fastfeed.publish.publisher import Publisher, PublishError
from fastfeed.publish.reading import StreamReadError, stream_info
from fastfeed.recorder import early_signals
from fastfeed.store import Store

if TYPE_CHECKING:
    from nats.aio.client import Client
    from prometheus_client.core import Metric

__all__ = ["NATS_MISSING", "connect", "main", "redacted", "require_nats", "server_list"]

log = logging.getLogger("fastfeed.publish")

NATS_MISSING = "this command needs nats-py: pip install 'fastfeed[publish]'"


def server_list(text: str) -> list[str]:
    """``nats://h1:4222,nats://h2:4222`` as a list; raises ConfigError on a malformed URL."""
    urls = [u.strip() for u in text.split(",") if u.strip()]
    if not urls:
        raise ConfigError("--nats: expected nats://HOST:PORT[,nats://HOST:PORT...]")
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("nats", "tls") or not parts.hostname or port is None:
            raise ConfigError(f"--nats {redacted(url)!r}: expected nats://HOST:PORT or tls://")
    return urls


def require_nats() -> None:
    """Raise ConfigError saying how to get nats-py if it is not installed (the one-file app)."""
    try:
        import nats  # noqa: F401
    except ImportError:
        raise ConfigError(NATS_MISSING) from None


def redacted(url: str) -> str:
    """A server URL safe to log: any user and password in it removed."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://***@{host}{port}"


async def connect(servers: list[str]) -> Client:
    """A NATS connection that reconnects forever (an outage only grows the publish lag).

    Raises:
        ConfigError: nats-py is not installed.
        PublishError: no server answered within PUBLISH_CONNECT_TIMEOUT_S.
    """
    require_nats()
    import nats
    from nats.errors import NoServersError

    client: list[Client] = []

    async def disconnected() -> None:
        if client and not client[0].is_closed:  # our own close() calls this too
            log.warning("disconnected from NATS; reconnecting (the journal keeps the unpublished)")

    try:
        # Unlimited reconnects also retry the first connect forever: bound that one here.
        nc = await asyncio.wait_for(
            nats.connect(
                servers=servers,
                connect_timeout=defaults.PUBLISH_CONNECT_TIMEOUT_S,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=defaults.PUBLISH_BACKOFF_CAP_S / 4,
                error_cb=_quiet,
                disconnected_cb=disconnected,
                reconnected_cb=_reconnected,
            ),
            defaults.PUBLISH_CONNECT_TIMEOUT_S,
        )
    except (NoServersError, OSError, TimeoutError) as exc:
        names = ", ".join(redacted(u) for u in servers)
        raise PublishError(
            f"cannot connect to NATS at {names}: {type(exc).__name__}",
            hint="check --nats and that the servers are up",
        ) from None
    client.append(nc)
    return nc


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %s", exc)


async def _reconnected() -> None:
    log.info("reconnected to NATS")


def main(args: argparse.Namespace) -> int:
    """Run ``fastfeed publish`` until SIGTERM or SIGINT; returns the exit code."""
    require_nats()
    if args.nats is None:
        raise ConfigError(f"no NATS servers: give --nats URL[,URL...] or set ${NATS_ENV}")
    servers = server_list(args.nats)
    passwords = [p for p in (urlsplit(u).password for u in servers) if p]
    setup_logging(args.log_format, args.log_level, passwords)
    data_dir = open_data_dir(args.data_dir)
    journal_dir = data_dir / JOURNAL_DIR
    if not journal_dir.is_dir():
        raise ConfigError(f"no journal in {args.data_dir} yet: start the recorder first")
    cursor_file = cursor_path(data_dir, args.stream)
    if args.metrics is not None:
        from fastfeed.recorder.metrics import parse_listen

        parse_listen(args.metrics)
    db = data_dir / STORE_FILE
    store = Store.open(db, readonly=True) if db.exists() else Store.empty()
    try:
        venue = venue_of(store, journal_dir)
    finally:
        store.close()
    result: int = uvloop.run(_main(args, servers, journal_dir, cursor_file, venue))
    return result


async def _main(
    args: argparse.Namespace, servers: list[str], journal_dir: Path, cursor_file: Path, venue: str
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Caught while the modules loaded (fastfeed.cli keeps them for `run` and `publish`).
    if any(sig != signal.SIGHUP for sig in early_signals.take()):
        stop.set()
    nc = await connect(servers)
    try:
        js = nc.jetstream(timeout=defaults.PUBLISH_CONNECT_TIMEOUT_S)
        if args.create_stream:
            await ensure_stream(js, args.stream, args.replicas, args.max_age)
        pub = Publisher(
            nc,
            js,
            journal_dir=journal_dir,
            venue=venue,
            stream=args.stream,
            cursor_file=cursor_file,
            cursor=load_cursor(cursor_file),
        )
        await pub.reconcile()
        metrics = await _start_metrics(args, pub, nc)
        try:
            await pub.run(stop)
        finally:
            if metrics is not None:
                await metrics.close()
        c = pub.counters
        log.info(
            "stopped at LSN %d: %d published, %d acks, %d re-sent, %d batches, %d reconciled",
            pub.acked_lsn,
            c.published,
            c.acks,
            c.resends,
            c.batches,
            c.reconciled,
        )
    finally:
        await nc.close()
    return 0


async def ensure_stream(js: Any, stream: str, replicas: int, max_age_s: float | None) -> None:
    """Create ``stream`` as docs/scale-out.md recommends, unless it exists already."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import APIError, NotFoundError

    try:
        await stream_info(js, stream)
        return
    except NotFoundError:
        pass
    except StreamReadError as exc:
        raise PublishError(str(exc)) from None
    config = StreamConfig(
        name=stream,
        subjects=[f"{defaults.PUBLISH_SUBJECT_PREFIX}.>"],
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=defaults.PUBLISH_DUPLICATE_WINDOW_S,
        allow_direct=True,
        allow_batched=True,
        max_age=max_age_s or 0,
    )
    try:
        await js.add_stream(config)
    except APIError as exc:
        raise PublishError(f"cannot create stream {stream}: {exc.description}") from None
    log.info("created stream %s (R%d, file, duplicate window 10 min)", stream, replicas)


async def _start_metrics(args: argparse.Namespace, pub: Publisher, nc: Client) -> Any:
    """Serve /metrics and /healthz for the publisher if ``--metrics`` is set."""
    if args.metrics is None:
        return None
    from prometheus_client.registry import Collector

    from fastfeed.recorder.metrics import MetricsServer, make_registry, parse_listen

    class PublisherCollector(Collector):
        def collect(self) -> Iterator[Metric]:
            return publish_metrics(pub)

    def health() -> str | None:
        if not nc.is_connected:
            return "not connected to NATS"
        lag = lag_seconds(pub)
        if lag > defaults.PUBLISH_HEALTH_MAX_LAG_S:
            return f"publish lag {lag:.1f} s over {defaults.PUBLISH_HEALTH_MAX_LAG_S:g} s"
        return None

    host, port = parse_listen(args.metrics)
    server = MetricsServer(host, port, make_registry(PublisherCollector()), health)
    await server.start()
    return server


def lag_seconds(pub: Publisher) -> float:
    """How long the publisher has not been level with the journal's durable LSN."""
    if pub.acked_lsn >= pub.durable_lsn:
        return 0.0
    return time.monotonic() - pub.caught_up_at


def publish_metrics(pub: Publisher) -> Iterator[Metric]:
    """The publisher's metric families (documented in docs/scale-out.md)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    c = pub.counters
    for name, doc, value in (
        ("published", "publishes sent (re-sends included)", c.published),
        ("acks", "messages acknowledged as stored", c.acks),
        ("resends", "publishes sent again (ack timeout or error answer)", c.resends),
        ("batches", "fast-ingest batches committed", c.batches),
        ("errors", "error answers from the stream (503, API errors)", c.errors),
        ("reconciled", "messages found stored at start and not sent again", c.reconciled),
        ("rewinds", "starts that found the stream recreated or regressed", c.rewinds),
        ("skipped_records", "journal records deleted before they were published", pub.skipped),
    ):
        yield CounterMetricFamily(f"fastfeed_publish_{name}", doc, value=value)
    for name, doc, gvalue in (
        ("durable_lsn", "journal durable LSN the publisher has seen", pub.durable_lsn),
        ("acked_lsn", "journal LSN up to which everything is stored in the stream", pub.acked_lsn),
        ("lag_records", "durable LSN minus acked LSN", max(0, pub.durable_lsn - pub.acked_lsn)),
        ("lag_seconds", "time since last level with the journal", lag_seconds(pub)),
        ("in_flight", "publishes awaiting their ack", pub.in_flight),
    ):
        yield GaugeMetricFamily(f"fastfeed_publish_{name}", doc, value=gvalue)
