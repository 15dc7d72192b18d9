"""`fastfeed run`: one recorder process from start-up recovery to a clean exit.

Order of things, each for a reason:
1. signal handlers first, so a SIGTERM during recovery is a graceful stop, not a dead process;
2. journal opened (torn tail repaired) and records after SQLite's applied LSN replayed through
   the same pipeline as live frames, so the tracker knows every stream's last seq;
3. connect and subscribe with ``resume`` = last seq + 1 from that state;
4. on stop: stop reading, journal what was read, sync, final snapshot, close.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import orjson
import uvloop

from fastfeed import defaults
from fastfeed.catchup import replay_into
from fastfeed.datadir import JOURNAL_DIR, STORE_FILE, prepare_data_dir
from fastfeed.derive.pipeline import Pipeline
from fastfeed.derive.streams import StreamKey
from fastfeed.errors import (
    ConfigError,
    FastfeedError,
    JournalError,
    JournalLocked,
    StoreError,
    VenueError,
)
from fastfeed.journal import FsyncMode, Journal, RecordKind
from fastfeed.logs import setup_logging
from fastfeed.recorder import early_signals
from fastfeed.recorder.backoff import Backoff
from fastfeed.recorder.config import (
    RecorderConfig,
    load_api_key,
    load_toml,
    parse_channel_specs,
    validate,
)
from fastfeed.recorder.connection import Connection
from fastfeed.recorder.resync import ResyncScheduler
from fastfeed.recorder.shards import ShardedFeed
from fastfeed.recorder.snapshotter import Snapshotter
from fastfeed.recorder.statusline import Status, StatusReporter
from fastfeed.venues import VENUES, adapter_for
from fastfeed.venues.base import SnapshotVenue

if TYPE_CHECKING:
    from fastfeed.recorder.metrics import MetricsServer

__all__ = ["Recorder", "config_from_args", "run_from_args"]

log = logging.getLogger("fastfeed.recorder")

CONNECTION_SLOT = 1  # the journal header's stream field: this recorder's one venue connection
EXIT_SIGNAL_FORCED = 130


def config_from_args(args: argparse.Namespace) -> RecorderConfig:
    """Merge defaults < TOML file < flags into one validated-shape config."""
    values: dict[str, object] = {}
    if args.config is not None:
        values.update(load_toml(args.config))
    if args.stall_timeout is not None:
        values["stall_timeout_s"] = args.stall_timeout
    if getattr(args, "rotate_after", None) is not None:
        values["rotate_after_s"] = args.rotate_after
    for name in (
        "venue",
        "endpoint",
        "data_dir",
        "fsync",
        "api_key_file",
        "ca_file",
        "log_format",
        "log_level",
        "metrics",
        "repair_journal",
        "segment_mib",
        "min_free_mib",
        "rest_endpoint",
        "jitter_seed",
    ):
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = flag
    specs = args.channels if args.channels else values.pop("channels", [])
    values.pop("channels", None)
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise ConfigError('config: "channels" must be a list of "CHANNEL:SYM[,SYM...]" strings')
    venue = str(values.get("venue", "tickdb"))
    config = RecorderConfig(channels=parse_channel_specs(specs, venue), config_file=args.config)
    adapter = adapter_for(venue) if venue in VENUES else None
    if adapter is not None and not adapter.replays and "endpoint" not in values:
        config.endpoint = cast(SnapshotVenue, adapter).default_ws_base()
    for name, value in values.items():
        if name in ("data_dir", "api_key_file", "ca_file"):
            value = Path(str(value))
        elif name == "metrics":
            value = str(value)  # TOML `metrics = 9464` is an int
        elif name == "fsync":
            try:
                value = FsyncMode(str(value))
            except ValueError:
                raise ConfigError(
                    f"bad fsync mode {value!r}: expected group, always or none"
                ) from None
        setattr(config, name, value)
    return config


def run_from_args(args: argparse.Namespace) -> int:
    """Parse, validate and run; returns the process exit code."""
    config = config_from_args(args)
    api_key = load_api_key(config)
    setup_logging(config.log_format, config.log_level, secrets=[api_key] if api_key else [])
    validate(config, api_key)
    if config.metrics is not None:
        from fastfeed.recorder.metrics import parse_listen

        parse_listen(config.metrics)  # a bad --metrics fails before the journal is opened
    recorder = Recorder(config, api_key)
    try:
        return uvloop.run(recorder.main())
    finally:
        # The loop's signal handlers went with it, and the default action would kill the
        # process half-way through its exit: a stop signal keeps meaning what it meant.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _: recorder.on_stop_signal(signal.Signals(signum)))


class Recorder:
    """Owns the journal, pipeline, snapshotter, connection and (with ``--venue sim``) the sim."""

    def __init__(self, config: RecorderConfig, api_key: str | None) -> None:
        self.config = config
        self._api_key = api_key
        self._adapter = adapter_for(config.venue)
        self._stop = asyncio.Event()
        self._signals = 0
        self._fatal: FastfeedError | None = None
        self._connection: Connection | None = None  # venues that replay: one connection
        self._feed: ShardedFeed | None = None  # venues that do not: sharded, rotated
        self._frames = 0
        self._resyncs = ResyncScheduler()
        self._subscriptions = {ch: list(syms) for ch, syms in config.channels.items()}
        self._started = False  # the "started" control record, with the subscriptions, is written
        self._messages_at_connect = 0  # pipeline.messages when the current connection came up
        self._down_since: float | None = time.monotonic()  # None while connected (for /healthz)

    # -- process lifecycle ---------------------------------------------------------------------
    async def main(self) -> int:
        """Run until a signal or a fatal error; returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        for sig in early_signals.take():
            if sig == signal.SIGHUP:
                self._on_reload_signal()
            else:
                self.on_stop_signal(sig)
        data_dir = prepare_data_dir(self.config.data_dir)
        self.journal = await self._open_journal(data_dir / JOURNAL_DIR)
        try:
            return await self._run_with_journal(data_dir)
        finally:
            self.journal.close()

    async def _open_journal(self, directory: Path) -> Journal:
        """Open the journal, waiting a little for a recorder that is still exiting to let go.

        Read-only commands never take the lock; another recorder holds it for good and is
        refused after the wait.
        """
        deadline = time.monotonic() + defaults.LOCK_WAIT_S
        while True:
            try:
                return Journal.open(
                    directory,
                    fsync=self.config.fsync,
                    repair=self.config.repair_journal,
                    segment_bytes=self.config.segment_mib * defaults.MiB,
                    min_free_bytes=self.config.min_free_mib * defaults.MiB,
                )
            except JournalLocked:
                if time.monotonic() >= deadline or self._stop.is_set():
                    raise
                await asyncio.sleep(defaults.LOCK_POLL_S)

    async def _run_with_journal(self, data_dir: Path) -> int:
        log.info("%s", self.journal.recovery)
        self.pipeline = Pipeline(self.config.venue, self._adapter)
        self.snapshotter = self._open_snapshotter(data_dir / STORE_FILE)
        if (
            self.config.repair_journal
            and self.journal.recovery.repaired
            and self.snapshotter.applied_lsn > self.journal.accepted_lsn
        ):
            # The repair dropped records SQLite had applied: its LSNs would collide with the
            # ones appended next. Keep the file aside and rebuild SQLite from the journal;
            # the venue's replay then fills what the repair dropped.
            self.snapshotter.close()
            aside = _move_store_aside(data_dir / STORE_FILE)
            log.warning(
                "journal repaired below SQLite's applied LSN %d: %s moved to %s, rebuilding",
                self.snapshotter.applied_lsn,
                data_dir / STORE_FILE,
                aside,
            )
            self.snapshotter = self._open_snapshotter(data_dir / STORE_FILE)
        try:
            replayed = replay_into(self.journal, self.pipeline, self.snapshotter)
            log.info(
                "recovered: replayed %d journal records into SQLite; %d streams, %d gaps open",
                replayed,
                len(self.pipeline.tracker_streams()),
                self.pipeline.gaps_open(),
            )
            self._journal_control(
                {
                    "event": "started",
                    "venue": self.config.venue,  # readers label streams from the journal alone
                    "subscriptions": self._subscriptions,
                }
            )
            self._started = True
            if self._stop.is_set():
                return 0
            metrics = await self._start_metrics()
            try:
                return await self._record()
            finally:
                if metrics is not None:
                    await metrics.close()
        finally:
            self.snapshotter.close()

    def _open_snapshotter(self, path: Path) -> Snapshotter:
        return Snapshotter(
            self.journal, self.pipeline, path, fsync=self.config.fsync, venue=self.config.venue
        )

    async def _record(self) -> int:
        sim = None
        endpoint = self.config.endpoint
        if self.config.venue == "sim":
            from fastfeed.sim import SimConfig, serve

            streams = tuple((ch, s) for ch, syms in self._subscriptions.items() for s in syms)
            sim = await serve(SimConfig(streams=streams), host="127.0.0.1", port=0)
            endpoint = f"ws://127.0.0.1:{sim.port}/v1/realtime"
            log.info("built-in simulator listening on %s", endpoint)
        link: Connection | ShardedFeed
        if self._adapter.replays:
            link = self._connection = Connection(
                self._adapter.url(endpoint, self._api_key),
                self._adapter.redacted_url(endpoint),
                self,
                ssl_context=self._ssl_context(endpoint),
                ping_interval_s=self.config.ping_interval_s,
                stall_timeout_s=self.config.stall_timeout_s,
                backoff=Backoff(rng=random.Random(self.config.jitter_seed)),
            )
        else:
            link = self._feed = self._sharded_feed(cast(SnapshotVenue, self._adapter), endpoint)
        reporter = StatusReporter(self._status)
        try:
            async with asyncio.TaskGroup() as tasks:
                conn_task = tasks.create_task(link.run(), name="connection")
                tasks.create_task(self._snapshots(), name="snapshotter")
                tasks.create_task(reporter.run(self._stop), name="status")
                if self._feed is None:
                    tasks.create_task(self._resync_loop(), name="resync")
                await self._stop.wait()
                await self._shutdown(conn_task)
        finally:
            if sim is not None:
                await sim.close()
        if self._fatal is not None:
            raise self._fatal
        return 0

    def _sharded_feed(self, adapter: SnapshotVenue, endpoint: str) -> ShardedFeed:
        rest = self.config.rest_endpoint or adapter.default_rest_base()
        return ShardedFeed(
            adapter,
            endpoint,
            rest,
            self._subscriptions,
            self,
            ssl_context=self._ssl_context(endpoint),
            rest_ssl_context=self._ssl_context(rest.replace("https://", "wss://", 1)),
            stall_timeout_s=self.config.stall_timeout_s,
            ping_interval_s=self.config.ping_interval_s,
            rotate_after_s=self.config.rotate_after_s,
        )

    async def _shutdown(self, conn_task: asyncio.Task[None]) -> None:
        """Graceful stop, bounded by SHUTDOWN_TIMEOUT_S; the journal is synced either way."""
        link = self._connection or self._feed
        assert link is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + defaults.SHUTDOWN_TIMEOUT_S
        link.stop_reading()
        await asyncio.sleep(0)  # let callbacks already scheduled by picows deliver their frames
        link.stop()
        # A venue that never answers our close frame must not cost the final snapshot.
        done, _ = await asyncio.wait([conn_task], timeout=defaults.CLOSE_TIMEOUT_S)
        if not done:
            log.warning(
                "the venue did not complete the close in %g s: aborting the connection",
                defaults.CLOSE_TIMEOUT_S,
            )
            link.drop("shutdown: the venue did not answer the close")
        try:
            async with asyncio.timeout_at(deadline):
                await conn_task
                self.journal.sync()
                # After a failed commit its rows are gone from the pipeline: a later batch
                # would claim them. SQLite re-derives them from the journal at the next start.
                if not isinstance(self._fatal, StoreError):
                    await self.snapshotter.flush()
        except FastfeedError as exc:
            log.error("final sync or snapshot failed: %s", exc)
            self._fail(exc)
        except TimeoutError:
            log.warning(
                "graceful shutdown took over %g s: the journal is synced; SQLite stops at"
                " its last snapshot and catches up from the journal at the next start",
                defaults.SHUTDOWN_TIMEOUT_S,
            )
            # A large batch can take SQLite seconds to commit: abort it rather than wait.
            self.snapshotter.abandon()
            conn_task.cancel()
            self.journal.sync()
        log.info(
            "stopped: journal durable to LSN %d, SQLite applied to LSN %d",
            self.journal.durable_lsn,
            self.snapshotter.applied_lsn,
        )

    async def _snapshots(self) -> None:
        """The snapshotter's loop; a failed snapshot or sync stops recording, in one line."""
        try:
            await self.snapshotter.run(self._stop)
        except FastfeedError as exc:
            log.error("snapshot failed: %s", exc)
            self._fail(exc)
            self._stop_reading()

    def on_stop_signal(self, sig: signal.Signals) -> None:
        """SIGTERM/SIGINT: the first stops gracefully, a second exits at once."""
        self._signals += 1
        if self._signals > 1:
            # Second signal: leave now. Everything accepted is in the shared mapping, so the
            # page cache still holds it and the next start recovers it (kill -9 safe).
            log.warning("second %s: exiting without waiting", sig.name)
            os._exit(EXIT_SIGNAL_FORCED)
        log.info("%s: stopping (send it again to exit at once)", sig.name)
        self._stop.set()

    def _on_reload_signal(self) -> None:
        if self.config.config_file is None:
            log.info("SIGHUP ignored: no --config file to reload")
            return
        try:
            specs = load_toml(self.config.config_file).get("channels")
            if specs is None:
                # The file never named the channels (they came from --channels): nothing to
                # reload, and reading "none" as "record nothing" would silently stop recording.
                log.info(
                    "SIGHUP: %s names no channels; keeping the current set", self.config.config_file
                )
                return
            if not specs:
                raise ConfigError("channels = [] would record nothing")
            new = parse_channel_specs(list(specs), self.config.venue)
        except FastfeedError as exc:
            log.error("SIGHUP: keeping the current channels: %s", exc)
            return
        if not self._adapter.replays and self._started:
            log.error(
                "SIGHUP: %s records a fixed channel set; restart to change it", self.config.venue
            )
            return
        if not self._started:
            self._subscriptions = new  # journaled with the "started" record, sent at connect
            log.info("SIGHUP: will record %s", _describe_subs(new))
            return
        self._apply_subscriptions(new)

    def _fail(self, error: FastfeedError) -> None:
        if self._fatal is None:
            self._fatal = error
        self._stop.set()

    def _ssl_context(self, endpoint: str) -> ssl.SSLContext | None:
        if not endpoint.startswith("wss://"):
            return None
        context = ssl.create_default_context()  # verifies certificates and host names
        if self.config.ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.config.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load CA file {self.config.ca_file}: {exc}") from None
        return context

    def _status(self) -> Status:
        return Status(
            frames=self._frames,
            records=self.pipeline.messages,
            accepted_lsn=self.journal.accepted_lsn,
            durable_lsn=self.journal.durable_lsn,
            applied_lsn=self.snapshotter.applied_lsn,
            gaps_open=self.pipeline.gaps_open(),
            reconnects=link.reconnects if (link := self._connection or self._feed) else 0,
            malformed=self.pipeline.malformed,
            connected=bool(link and link.connected),
        )

    # -- the journal-first data path -----------------------------------------------------------
    def _stop_reading(self) -> None:
        link = self._connection or self._feed
        if link is not None:
            link.stop_reading()

    def _append(
        self, kind: RecordKind, payload: bytes, flags: int = 0, slot: int = CONNECTION_SLOT
    ) -> None:
        """Journal one record, then derive from it: the only way anything enters the pipeline."""
        if isinstance(self._fatal, JournalError):
            return  # the journal already refused: nothing more is accepted (the venue replays)
        recv_ns = time.time_ns()
        try:
            lsn = self.journal.append(kind, slot, recv_ns, payload, flags)
        except JournalError as exc:
            log.error("journal refused a record: %s", exc)
            self._fail(exc)
            self._stop_reading()
            return
        self.pipeline.feed(lsn, kind, recv_ns, payload, flags)

    def _journal_control(self, doc: dict[str, object]) -> None:
        self._append(RecordKind.CONTROL, orjson.dumps(doc))

    def _send(self, connection: Connection, payload: bytes) -> None:
        # Journal first: after a crash the journal shows what we asked for and when.
        self._append(RecordKind.OUTBOUND, payload)
        connection.send(payload)

    def _subscribe(self, connection: Connection, channel: str, symbols: list[str]) -> None:
        resume = {
            s: point
            for s in symbols
            if (point := self.pipeline.resume_point(StreamKey(channel, s))) is not None
        }
        self._send(connection, self._adapter.subscribe(channel, symbols, resume or None))

    def _apply_subscriptions(self, new: dict[str, list[str]]) -> None:
        old = self._subscriptions
        self._subscriptions = new
        self._journal_control({"subscriptions": new})
        conn = self._connection
        if conn is None or not conn.connected:
            return  # the next connect subscribes to the new set
        for channel, symbols in old.items():
            gone = [s for s in symbols if s not in new.get(channel, [])]
            if gone:
                self._send(conn, self._adapter.unsubscribe(channel, gone))
        for channel, symbols in new.items():
            added = [s for s in symbols if s not in old.get(channel, [])]
            if added:
                self._subscribe(conn, channel, added)
        log.info("SIGHUP: now recording %s", _describe_subs(new))

    async def _start_metrics(self) -> MetricsServer | None:
        """Serve /metrics and /healthz if ``--metrics`` is set (only then load prometheus)."""
        if self.config.metrics is None:
            return None
        from fastfeed.recorder.metrics import (
            MetricsServer,
            RecorderCollector,
            health_problem,
            make_registry,
            parse_listen,
        )

        def health() -> str | None:
            since = self._down_since
            down_for = 0.0 if since is None else time.monotonic() - since
            return health_problem(
                self._status(),
                down_for,
                self.config.stall_timeout_s,
                defaults.HEALTH_MAX_SNAPSHOT_LAG,
            )

        host, port = parse_listen(self.config.metrics)
        registry = make_registry(RecorderCollector(self._status, self.pipeline, self.journal))
        server = MetricsServer(host, port, registry, health)
        await server.start()
        return server

    # -- FeedHandler ---------------------------------------------------------------------------
    def on_connected(self, connection: Connection) -> None:
        self._down_since = None
        self._messages_at_connect = self.pipeline.messages
        self._append(RecordKind.CONNECTION, orjson.dumps({"event": "connected"}))
        for channel, symbols in self._subscriptions.items():
            self._subscribe(connection, channel, symbols)
        keys = [StreamKey(c, s) for c, syms in self._subscriptions.items() for s in syms]
        self._resyncs.asked(keys, time.monotonic())

    def on_frame(self, payload: bytes, binary: bool) -> None:
        self._frames += 1
        self._append(RecordKind.INBOUND, payload, 1 if binary else 0)
        pipeline = self.pipeline
        if pipeline.fatal is not None:
            self._fail(
                VenueError(
                    pipeline.fatal.message,
                    code=pipeline.fatal.code,
                    hint="check TICKDB_API_KEY / --api-key-file",
                )
            )
        elif pipeline.resync:
            pipeline.resync.clear()
            self._resync()
        conn = self._connection
        if (
            conn is not None
            and not conn.productive
            and pipeline.messages > self._messages_at_connect
        ):
            conn.mark_productive()  # market data arrived after subscribing: a healthy connection

    def _resync(self) -> None:
        """Re-subscribe gapped streams with resume, as the scheduler allows."""
        conn = self._connection
        if conn is None or not conn.connected:
            return
        due = self._resyncs.due(self.pipeline.gapped_streams(), time.monotonic())
        for channel, symbols in due.items():
            log.warning("gap on %s:%s: re-subscribing with resume", channel, ",".join(symbols))
            self._subscribe(conn, channel, symbols)

    async def _resync_loop(self) -> None:
        """Retry resyncs whose gaps are still open (refused or lost acks)."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), defaults.RESYNC_MIN_INTERVAL_S)
            self._resync()

    def on_disconnected(self, reason: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
        self._append(
            RecordKind.CONNECTION, orjson.dumps({"event": "disconnected", "reason": reason})
        )

    def on_heartbeat(self, connection: Connection) -> None:
        ping = self._adapter.ping()
        if ping is not None:
            self._send(connection, ping)

    # -- FeedOwner (the sharded feed of venues that cannot replay) -----------------------------
    def journal_record(self, kind: RecordKind, payload: bytes, flags: int, slot: int) -> None:
        """Journal one record of the sharded feed, then derive from it."""
        if kind == RecordKind.INBOUND:
            self._frames += 1
        elif kind == RecordKind.CONNECTION:
            self._down_since = None if self._feed and self._feed.connected else time.monotonic()
        self._append(kind, payload, flags, slot)

    def take_resync(self) -> set[StreamKey]:
        """Streams whose gap opened since the last call."""
        opened, self.pipeline.resync = self.pipeline.resync, set()
        return opened

    def gapped_streams(self) -> set[StreamKey]:
        return self.pipeline.gapped_streams()

    def last_seq(self, key: StreamKey) -> int | None:
        stats = self.pipeline.stream_stats(key)
        return None if stats is None else stats.last_seq


def _move_store_aside(path: Path) -> Path:
    """Rename ``path`` (and its -wal/-shm files) to a name no later run reuses."""
    aside = path.with_name(f"{path.name}.before-repair-{time.time_ns()}")
    for suffix in ("-wal", "-shm", ""):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, aside.with_name(aside.name + suffix))
    return aside


def _describe_subs(subs: dict[str, list[str]]) -> str:
    return " ".join(f"{ch}:{','.join(syms)}" for ch, syms in subs.items()) or "nothing"
