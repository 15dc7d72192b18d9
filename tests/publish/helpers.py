"""Publisher processes, a live journal writer and stream readers for the publish tests.

Every wait polls a condition against a deadline (``wait_for``); processes are stopped or killed
by PID; everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import orjson
from nats.js.api import StorageType, StreamConfig

from fastfeed.datadir import prepare_data_dir
from fastfeed.journal import FsyncMode, Journal, RecordKind, crc32c
from fastfeed.publish.cursor import Cursor, cursor_path, load_cursor
from fastfeed.publish.reading import read_stream, stream_info
from fastfeed.publish.subjects import HDR_MSG_ID, message_id
from fastfeed.sim.content import StreamGenerator
from tests.e2e.harness import REPO, wait_for

__all__ = [
    "LiveJournal",
    "Publisher",
    "Stored",
    "create_stream",
    "cursor",
    "delete_stream",
    "expected_ids",
    "replicas_current",
    "stored",
    "stream_leader",
    "wait_for",
]

STREAM = "MD"
STOP_TIMEOUT_S = 20.0
READ_BACK_DEADLINE_S = 60.0  # reading a stream back: retried until one read succeeds


@dataclass(frozen=True)
class Stored:
    """One message read back from the stream."""

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


class Publisher:
    """``fastfeed publish`` over one data dir; each run's stderr kept in ``workdir``."""

    def __init__(self, workdir: Path, data_dir: Path, urls: str, *options: str) -> None:
        self.workdir = workdir
        self.args = [
            sys.executable,
            "-m",
            "fastfeed",
            "publish",
            "--data-dir",
            str(data_dir),
            "--nats",
            urls,
            "--stream",
            STREAM,
            *options,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        with (self.workdir / f"publish-{self.runs}.err").open("wb") as err:
            self.proc = subprocess.Popen(self.args, cwd=REPO, stderr=err)

    def wait_ready(self) -> None:
        """Until this run has reconciled (it handles SIGTERM from then on)."""
        wait_for(lambda: "resuming after LSN" in self.log(), "the publisher reconciled")

    def log(self, run: int | None = None) -> str:
        return (self.workdir / f"publish-{run or self.runs}.err").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no drain, no final cursor."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM and the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)


class LiveJournal:
    """A journal writer in a thread: ``total`` frames of ``streams`` in turn, ``rate`` per second.

    Group commit, as the recorder runs: the publisher may publish only what it has synced. The
    journal directory exists from the start, so a publisher can be up before the first frame:
    a test that kills something "mid-run" starts the writer only then, or a late publisher
    could catch up with the whole run before the kill.
    """

    def __init__(
        self, data_dir: Path, streams: list[tuple[str, str]], total: int, rate: float
    ) -> None:
        prepare_data_dir(data_dir)
        (data_dir / "journal").mkdir(mode=0o700)
        self.data_dir = data_dir
        self.frames: list[bytes] = []
        gens = [StreamGenerator(1, ch, sym) for ch, sym in streams]
        for i in range(total):
            self.frames.append(gens[i % len(gens)].next())
        self._rate = rate
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.done = threading.Event()

    def start(self) -> LiveJournal:
        self._thread.start()
        return self

    def _run(self) -> None:
        with Journal.open(
            self.data_dir / "journal", segment_bytes=256 * 1024, fsync=FsyncMode.GROUP
        ) as journal:
            started = time.monotonic()
            for n, frame in enumerate(self.frames):
                journal.append(RecordKind.INBOUND, 1, time.time_ns(), frame)
                if n % 100 == 0:
                    ahead = n / self._rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)  # pacing the producer, not waiting for a condition
        self.done.set()

    def join(self) -> None:
        self._thread.join(timeout=60)
        assert self.done.is_set(), "journal writer did not finish"


def expected_ids(frames: list[bytes]) -> set[str]:
    """The Msg-Ids the frames of the simulator get: seq and symbol read from each frame."""
    ids = set()
    for frame in frames:
        doc = orjson.loads(frame)
        ids.add(
            message_id(
                "tickdb",
                doc["cmd"],
                doc["data"]["symbol"],
                doc["seq"],
                crc32c(frame),
                len(frame),
            )
        )
    return ids


def _run(coro: Any) -> Any:
    # Not in asyncio debug mode (which -X dev turns on): its per-callback checks make reading
    # 30,000 messages back take half a minute. The code under test runs in subprocesses.
    return asyncio.run(coro, debug=False)


async def _quiet(exc: Exception) -> None:
    """A killed cluster node refuses connections: expected here, not worth a traceback."""


async def _connect(urls: str) -> Any:
    return await nats.connect(
        servers=urls.split(","), connect_timeout=5, max_reconnect_attempts=5, error_cb=_quiet
    )


def create_stream(
    urls: str, *, replicas: int = 1, duplicate_window: float = 600.0, batched: bool = True
) -> None:
    async def go() -> None:
        nc = await _connect(urls)
        try:
            await nc.jetstream(timeout=10).add_stream(
                StreamConfig(
                    name=STREAM,
                    subjects=["md.>"],
                    storage=StorageType.FILE,
                    num_replicas=replicas,
                    duplicate_window=duplicate_window,
                    allow_direct=True,
                    allow_batched=batched,
                )
            )
        finally:
            await nc.close()

    _run(go())


def delete_stream(urls: str) -> None:
    async def go() -> None:
        nc = await _connect(urls)
        try:
            await nc.jetstream(timeout=10).delete_stream(STREAM)
        finally:
            await nc.close()

    _run(go())


def count(urls: str) -> int:
    """Messages in the stream now (0 if it cannot be asked)."""

    async def go() -> int:
        nc = await _connect(urls)
        try:
            info = await nc.jetstream(timeout=5).stream_info(STREAM)
            return int(info.state.messages)
        finally:
            await nc.close()

    try:
        result: int = _run(go())
    except Exception:
        return 0
    return result


def stored(urls: str) -> list[Stored]:
    """Every message of the stream, in stream order."""

    async def go() -> list[Stored]:
        nc = await _connect(urls)
        try:
            js = nc.jetstream(timeout=10)
            info = await stream_info(js, STREAM)
            return [
                Stored(m.metadata.sequence.stream, m.subject, dict(m.headers or {}), m.data)
                async for m in read_stream(js, STREAM, "md.>", 1, info.state.last_seq)
            ]
        finally:
            await nc.close()

    # Right after a node of a cluster restarts, a read may find no leader answering for a
    # while: read again until one whole read succeeds (bounded like every other wait).
    end = time.monotonic() + READ_BACK_DEADLINE_S
    while True:
        try:
            result: list[Stored] = _run(go())
        except Exception:
            if time.monotonic() > end:
                raise
            continue
        return result


def ids_of(messages: list[Stored]) -> list[str]:
    return [m.headers[HDR_MSG_ID] for m in messages]


def publisher_up(data_dir: Path) -> bool:
    """Whether the publisher has reconciled (it saves its cursor before sending anything)."""
    return cursor_path(data_dir, STREAM).exists()


def cursor(data_dir: Path) -> Cursor:
    return load_cursor(cursor_path(data_dir, STREAM))


def stream_leader(urls: str) -> str | None:
    """The server name of the stream's leader (None while there is none)."""

    async def go() -> str | None:
        nc = await _connect(urls)
        try:
            info = await nc.jetstream(timeout=5).stream_info(STREAM)
            return info.cluster.leader if info.cluster else None
        finally:
            await nc.close()

    try:
        result: str | None = _run(go())
    except Exception:
        return None
    return result


def replicas_current(urls: str) -> bool:
    """Whether the stream has a leader and every replica is caught up with it."""

    async def go() -> bool:
        nc = await _connect(urls)
        try:
            info = await nc.jetstream(timeout=5).stream_info(STREAM)
            cluster = info.cluster
            return bool(
                cluster
                and cluster.leader
                and cluster.replicas
                and all(p.current and not p.offline for p in cluster.replicas)
            )
        finally:
            await nc.close()

    try:
        result: bool = _run(go())
    except Exception:
        return False
    return result
