"""`fastfeed run`: one recorder process from start-up recovery to a clean exit.

Order of things, each for a reason:
1. signal handlers first, so a SIGTERM during recovery is a graceful stop, not a dead process;
2. journal opened (torn tail repaired) and records after SQLite's applied LSN replayed through
   the same pipeline as live frames, so the tracker knows every stream's last seq;
3. connect and subscribe with ``resume`` = last seq + 1 from that state;
4. on stop: stop reading, journal what was read, sync, final snapshot, close.

``Recorder`` owns the process's lifecycle and signals and wires the rest: the journal-first
frame path (recorder/feed.py and its Cython sink), the conversation with the venue
(recorder/session.py), the applier that derives SQLite from the journal
(recorder/snapshotter.py) and the connection (recorder/connection.py), or for a venue that
cannot replay (Binance) the sharded, rotated connections (recorder/shards.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import uvloop

from fastfeed import defaults
from fastfeed.catchup import replay_into
from fastfeed.datadir import JOURNAL_DIR, STORE_FILE, prepare_data_dir
from fastfeed.derive.pipeline import Actions, Pipeline
from fastfeed.derive.streams import StreamKey
from fastfeed.errors import (
    ConfigError,
    FastfeedError,
    JournalLocked,
    StoreError,
)
from fastfeed.journal import Journal, RecordKind
from fastfeed.logs import setup_logging
from fastfeed.recorder import early_signals
from fastfeed.recorder._sink import FrameSink
from fastfeed.recorder.backoff import Backoff
from fastfeed.recorder.config import (
    RecorderConfig,
    config_from_args,
    load_api_key,
    load_toml,
    parse_channel_specs,
    validate,
)
from fastfeed.recorder.connection import Connection
from fastfeed.recorder.feed import Feed
from fastfeed.recorder.session import Session
from fastfeed.recorder.shards import ShardedFeed
from fastfeed.recorder.snapshotter import Snapshotter
from fastfeed.recorder.statusline import Status, StatusReporter
from fastfeed.venues import adapter_for
from fastfeed.venues.base import ShardVenue, SnapshotVenue

if TYPE_CHECKING:
    from fastfeed.publish.child import PublisherProcess
    from fastfeed.recorder.metrics import MetricsServer

__all__ = ["Recorder", "run_from_args"]

log = logging.getLogger("fastfeed.recorder")

EXIT_SIGNAL_FORCED = 130


def run_from_args(args: argparse.Namespace) -> int:
    """Parse, validate and run; returns the process exit code."""
    config = config_from_args(args)
    api_key = load_api_key(config)
    setup_logging(config.log_format, config.log_level, secrets=[api_key] if api_key else [])
    validate(config, api_key)
    if config.publish is not None:
        from fastfeed.publish.child import publish_argv

        publish_argv(config.publish, config.data_dir, config.log_format)  # fails before recording
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
        self._channels = config.channels  # what the session starts with (SIGHUP may change it)
        self._has_session = False  # self.session exists: a reload goes to it

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
        publisher = self._start_publisher(data_dir)
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(defaults.GIL_SWITCH_INTERVAL_S)
        try:
            return await self._run_with_journal(data_dir)
        finally:
            sys.setswitchinterval(switch_interval)
            self.journal.close()
            if publisher is not None:  # after the final sync, so it saw the last durable mark
                await asyncio.to_thread(publisher.stop)

    def _start_publisher(self, data_dir: Path) -> PublisherProcess | None:
        """``--publish`` / ``[publish]``: ``fastfeed publish`` in a process of its own."""
        settings = self.config.publish
        if settings is None:
            return None
        from fastfeed.publish.child import PublisherProcess, publish_argv

        args = publish_argv(settings, data_dir, self.config.log_format)
        return PublisherProcess(args, str(settings["nats"]))

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
        self.feed = Feed(
            self.journal,
            self._adapter,
            self.config.fsync,
            fail=self._fail,
            wake_applier=lambda: self.snapshotter.wake(),
            stop_reading=self._stop_reading,
        )
        self.pipeline = Pipeline(self.config.venue, self._adapter, scan=self.feed.scan)
        self.session = self._new_session()
        self._has_session = True
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
            self.session.journal_control(
                {
                    "event": "started",
                    "venue": self.config.venue,  # readers label streams from the journal alone
                    "subscriptions": self.session.subscriptions,
                }
            )
            self.session.started = True
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
            self.journal,
            self.pipeline,
            path,
            fsync=self.config.fsync,
            venue=self.config.venue,
            on_actions=self._on_actions,
        )

    def _on_actions(self, actions: Actions) -> None:
        """What the applier derived: the session reports it (and resyncs a venue that replays);
        the sharded feed of a venue that cannot replay recovers its gaps and rotations."""
        self.session.on_actions(actions)
        if self._feed is not None:
            self._feed.on_derived(actions.gapped, self.pipeline.derived_lsn)

    def _new_session(self) -> Session:
        return Session(self._adapter, self.feed, self.pipeline, self._channels, fail=self._fail)

    async def _record(self) -> int:
        sim = None
        endpoint = self.config.endpoint
        if self.config.venue == "sim":
            from fastfeed.sim import SimConfig, serve

            subs = self.session.subscriptions
            streams = tuple((ch, s) for ch, syms in subs.items() for s in syms)
            # The built-in venue continues where this data dir's recording stopped, so a
            # restart of the recorder is not mistaken for a venue restart (lost gaps, epoch).
            resume_at = tuple(
                (ch, s, seq)
                for ch, s in streams
                if (seq := self.pipeline.resume_point(StreamKey(ch, s))) is not None
            )
            config = SimConfig(streams=streams, resume_at=resume_at)
            sim = await serve(config, host="127.0.0.1", port=0)
            endpoint = f"ws://127.0.0.1:{sim.port}/v1/realtime"
            log.info("built-in simulator listening on %s", endpoint)
        link: Connection | ShardedFeed
        if self._adapter.replays:
            link = self._connection = Connection(
                self._adapter.url(endpoint, self._api_key),
                self._adapter.redacted_url(endpoint),
                self.session,
                ssl_context=self._ssl_context(endpoint),
                ping_interval_s=self.config.ping_interval_s,
                stall_timeout_s=self.config.stall_timeout_s,
                backoff=Backoff(rng=random.Random(self.config.jitter_seed)),
                listener=self.feed.listener,
            )
            self.session.connection = self._connection
        else:
            link = self._feed = self._sharded_feed(cast(ShardVenue, self._adapter), endpoint)
        reporter = StatusReporter(self._status)
        try:
            async with asyncio.TaskGroup() as tasks:
                conn_task = tasks.create_task(link.run(), name="connection")
                tasks.create_task(self._snapshots(), name="snapshotter")
                tasks.create_task(reporter.run(self._stop), name="status")
                if self._feed is None:
                    tasks.create_task(self.session.resync_loop(self._stop), name="resync")
                await self._stop.wait()
                await self._shutdown(conn_task)
        finally:
            if sim is not None:
                await sim.close()
        if self._fatal is not None:
            raise self._fatal
        return 0

    def _sharded_feed(self, adapter: ShardVenue, endpoint: str) -> ShardedFeed:
        rest: str | None = None
        if adapter.rest_snapshots:
            rest = self.config.rest_endpoint or cast(SnapshotVenue, adapter).default_rest_base()
        rotate_after_s = self.config.rotate_after_s if adapter.rotates else None
        return ShardedFeed(
            adapter,
            endpoint,
            rest,
            self.session.subscriptions,
            self,
            ssl_context=self._ssl_context(endpoint),
            rest_ssl_context=None
            if rest is None
            else self._ssl_context(rest.replace("https://", "wss://", 1)),
            stall_timeout_s=self.config.stall_timeout_s,
            # Our pings' pongs are all a quiet Binance connection delivers: a third of the
            # stall timeout leaves room for a heartbeat tick that wakes a hair early and
            # skips its ping (at half, one skip reads as a stall).
            ping_interval_s=min(self.config.ping_interval_s, self.config.stall_timeout_s / 3),
            rotate_after_s=rotate_after_s,
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
        if self._has_session and self.session.started and not self._adapter.replays:
            log.error(
                "SIGHUP: %s records a fixed channel set; restart to change it", self.config.venue
            )
            return
        if not self._has_session:  # still starting: the session will begin with these
            self._channels = new
            log.info(
                "SIGHUP: will record %s", ", ".join(f"{c}:{','.join(s)}" for c, s in new.items())
            )
            return
        self.session.change_subscriptions(new)

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
            frames=self.feed.frames,
            records=self.pipeline.messages,
            accepted_lsn=self.journal.accepted_lsn,
            durable_lsn=self.journal.durable_lsn,
            applied_lsn=self.snapshotter.applied_lsn,
            gaps_open=self.pipeline.gaps_open(),
            reconnects=link.reconnects if (link := self._connection or self._feed) else 0,
            malformed=self.pipeline.malformed,
            connected=bool(link and link.connected),
        )

    def _stop_reading(self) -> None:
        link = self._connection or self._feed
        if link is not None:
            link.stop_reading()

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

        last_data = [-1, time.monotonic()]  # [records, when that count was first seen]

        def health() -> str | None:
            now = time.monotonic()
            status = self._status()
            since = self.session.down_since
            down_for = 0.0 if since is None else now - since
            if status.records != last_data[0] or since is not None:
                last_data[:] = [status.records, now]  # data moved (or down: the watchdog's case)
            return health_problem(
                status,
                down_for,
                self.config.stall_timeout_s,
                defaults.HEALTH_MAX_SNAPSHOT_LAG,
                silent_for_s=now - last_data[1],
            )

        host, port = parse_listen(self.config.metrics)
        registry = make_registry(RecorderCollector(self._status, self.pipeline, self.journal))
        server = MetricsServer(host, port, registry, health)
        await server.start()
        return server

    # -- FeedOwner (the sharded feed of venues that cannot replay) -----------------------------
    def journal_record(self, kind: RecordKind, payload: bytes, flags: int, slot: int) -> int | None:
        """Journal one record of the sharded feed (the applier derives it); its LSN, or None
        once the journal has refused. REST snapshots and gap markers wake the applier."""
        if kind == RecordKind.CONNECTION:
            if self._feed is not None and self._feed.connected:
                self.session.down_since = None
            elif self.session.down_since is None:
                self.session.down_since = time.monotonic()
        lsn = self.feed.append(kind, payload, flags, slot)
        if kind in (RecordKind.REST, RecordKind.GAP):
            self.snapshotter.wake()
        return lsn

    def wake_applier(self) -> None:
        """Derive now rather than at the next interval."""
        self.snapshotter.wake()

    def listener(self, connection: Connection, slot: int) -> FrameSink:
        """The Cython sink for the sharded feed's connection ``slot``."""
        return self.feed.link_listener(connection, slot)

    def release(self, slot: int) -> None:
        """Connection ``slot`` of the sharded feed is closed for good."""
        self.feed.release(slot)

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
