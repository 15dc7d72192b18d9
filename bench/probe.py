"""The real ``Recorder`` in a benchmark process: counts a window, optionally times every frame.

Run by bench/load.py and bench/recovery.py as ``python -m bench.probe ...``. Everything between
the socket and SQLite is fastfeed's own code (``fastfeed.recorder.app.Recorder``); the probe adds
a window sampler task and, with ``--latency``, three clock reads per frame plus a journal
subclass that stamps durability (bench/latency.py). Without ``--latency`` the data path is
untouched.
"""

from __future__ import annotations

import time

STARTED_NS = time.monotonic_ns()  # before the heavy imports: recovery time counts them

import argparse  # noqa: E402
import asyncio  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import uvloop  # noqa: E402

from bench import latency  # noqa: E402
from bench.buildcheck import require_release_build  # noqa: E402
from bench.window import measure, sent_ns, write_result  # noqa: E402
from fastfeed.journal import FsyncMode  # noqa: E402
from fastfeed.logs import setup_logging  # noqa: E402
from fastfeed.recorder import app  # noqa: E402
from fastfeed.recorder.config import RecorderConfig, parse_channel_specs  # noqa: E402
from fastfeed.recorder.connection import Connection  # noqa: E402
from fastfeed.recorder.session import Session  # noqa: E402


class ProbeSession(Session):
    """``Session`` reporting the first connect and timing the frames that reach Python."""

    probe: ProbeRecorder

    def on_connected(self, connection: Connection) -> None:
        super().on_connected(connection)
        self.probe.connected()

    def on_frame(self, payload: bytes, binary: bool) -> None:
        self.probe.timed_frame(lambda: super(ProbeSession, self).on_frame(payload, binary), payload)


class ProbeRecorder(app.Recorder):
    """``Recorder`` plus the measurement hooks described in the module docstring."""

    def __init__(self, config: RecorderConfig, args: argparse.Namespace) -> None:
        super().__init__(config, "bench-key")
        self._args = args
        self._timing = False
        self._resumed_ns = 0
        self._hists = {
            name: latency.new_histogram() for name in ("callback", "accepted", "done", "added")
        }

    async def main(self) -> int:
        task = asyncio.create_task(self._window())
        try:
            return await super().main()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _window(self) -> None:
        args = self._args
        while self._resumed_ns == 0:
            await asyncio.sleep(0.001)
        doc: dict[str, Any] = {
            "started_ns": STARTED_NS,
            "resumed_ns": self._resumed_ns,
        }
        if args.duration > 0:
            journal = self.journal
            none = self.config.fsync is FsyncMode.NONE
            # Recorded = durable (synced) records; in NONE mode nothing is synced until exit,
            # so accepted is all it can claim.
            counter = (lambda: journal.accepted_lsn) if none else (lambda: journal.durable_lsn)
            base = journal.accepted_lsn

            def count() -> int:
                return max(0, counter() - base)

            timing = self._set_timing if args.latency else None
            doc["window"] = await measure(count, args.warmup, args.duration, timing)
            if args.latency:
                await asyncio.sleep(0.05)  # let the last group commit of the window publish
                assert isinstance(journal, latency.DurableStampJournal)
                hists = dict(self._hists)
                if not none:
                    hists["durable"] = journal.durable
                doc["latency"] = {k: latency.summary(h) for k, h in hists.items()}
        write_result(args.out, doc)

    def _set_timing(self, on: bool) -> None:
        self._timing = on

    def _new_session(self) -> Session:
        session = ProbeSession(
            self._adapter, self.feed, self.pipeline, self.config.channels, fail=self._fail
        )
        session.probe = self
        return session

    def connected(self) -> None:
        if self._resumed_ns == 0:
            self._resumed_ns = time.monotonic_ns()  # subscribed with resume: "resumed"

    def timed_frame(self, handle: Callable[[], None], payload: bytes) -> None:
        """Handle a frame that reached Python; with --latency, time it (the sink's steady
        frames never get here: bench/sink_micro.py measures those)."""
        if not self._timing:
            handle()
            return
        t0 = time.monotonic_ns()
        handle()
        t1 = time.monotonic_ns()
        sent = sent_ns(payload)
        if sent is None:
            return
        journal = self.journal
        assert isinstance(journal, latency.DurableStampJournal)
        latency.record(self._hists["callback"], t0 - sent)
        latency.record(self._hists["accepted"], journal.accepted_ns - sent)
        latency.record(self._hists["done"], t1 - sent)
        latency.record(self._hists["added"], journal.accepted_ns - t0)  # fastfeed's own share
        journal.watch(journal.accepted_lsn, sent)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--channels", action="append", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--fsync", choices=[m.value for m in FsyncMode], default="group")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the window")
    parser.add_argument("--duration", type=float, default=0.0, help="window; 0: exit at resume")
    parser.add_argument("--latency", action="store_true", help="time every stamped frame")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args()
    require_release_build()
    config = RecorderConfig(
        endpoint=args.endpoint,
        channels=parse_channel_specs(args.channels),
        data_dir=args.data_dir,
        fsync=FsyncMode(args.fsync),
        log_level="warning",
    )
    setup_logging(config.log_format, config.log_level, secrets=[])
    if args.latency:
        # The recorder opens its journal through the name in its own module: swap in the
        # stamping subclass for this process only.
        app.Journal = latency.DurableStampJournal  # type: ignore[misc]
    return uvloop.run(ProbeRecorder(config, args).main())


if __name__ == "__main__":
    raise SystemExit(main())
