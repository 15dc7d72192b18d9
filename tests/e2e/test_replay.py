"""``fastfeed replay``: a recording served back over the venue protocol, resume included.

The end-to-end test records from the simulator, replays that recording, records the replay with
a second recorder, and requires both exports to hold the same frames under the same seqs.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from fastfeed.sim.content import StreamGenerator
from fastfeed.tools.replay import serve_replay
from tests.recording import build

from .harness import FASTFEED, REPO, Recorder, Simulator, export, status

DEPTH = ("depth", "AAPL.US")
RECV_TIMEOUT_S = 30.0  # far above a healthy run; a hang fails instead of blocking the suite


def recorded(key: tuple[str, str], n: int) -> list[bytes]:
    gen = StreamGenerator(1, *key)
    return [gen.next() for _ in range(n)]


async def command(ws: ClientConnection, doc: dict[str, Any]) -> dict[str, Any]:
    """Send a command and return its reply (the next frame)."""
    await ws.send(orjson.dumps(doc).decode())
    reply: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
    return reply


async def frames(ws: ClientConnection, n: int) -> list[bytes]:
    got = []
    for _ in range(n):
        msg = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
        got.append(msg.encode() if isinstance(msg, str) else msg)
    return got


def subscribe(resume: int | None = None, symbol: str = "AAPL.US") -> dict[str, Any]:
    data: dict[str, Any] = {"channel": "depth", "symbols": [symbol]}
    if resume is not None:
        data["resume"] = {symbol: resume}
    return {"cmd": "subscribe", "data": data}


def test_resume_on_replay_with_a_websockets_client(tmp_path: Path) -> None:
    data = build(tmp_path / "data", {DEPTH: 50})
    want = recorded(DEPTH, 50)

    async def scenario() -> None:
        server = await serve_replay(data, speed=math.inf, port=0)
        url = f"ws://{server.host}:{server.port}/v1/realtime"
        try:
            async with connect(url) as ws:
                ack = await command(ws, subscribe())
                assert ack["data"]["streams"] == {"AAPL.US": {"first_seq": 1, "head_seq": 0}}
                assert await frames(ws, 50) == want
                # End of data: nothing more is sent, the connection stays up and answers pings.
                assert await command(ws, {"cmd": "ping"}) == {"cmd": "pong"}
            async with connect(url) as ws:
                ack = await command(ws, subscribe(resume=31))
                assert ack["data"]["streams"] == {"AAPL.US": {"first_seq": 31, "head_seq": 50}}
                assert await frames(ws, 20) == want[30:]
                assert await command(ws, {"cmd": "ping"}) == {"cmd": "pong"}
                # A stream the recording does not hold exists, empty, as a new venue stream.
                ack = await command(ws, subscribe(symbol="NOPE.US"))
                assert ack["data"]["streams"] == {"NOPE.US": {"first_seq": 1, "head_seq": 0}}
        finally:
            await server.close()

    asyncio.run(scenario())


def test_paced_replay_holds_frames_until_their_recorded_time(tmp_path: Path) -> None:
    data = build(tmp_path / "data", {DEPTH: 50})  # frames 1 ms apart in recorded time

    async def scenario() -> None:
        # A millionth of recorded speed: seq 2 falls due 1000 s after seq 1.
        server = await serve_replay(data, speed=1e-6, port=0)
        try:
            async with connect(f"ws://{server.host}:{server.port}/v1/realtime") as ws:
                ack = await command(ws, subscribe())
                assert ack["data"]["streams"] == {"AAPL.US": {"first_seq": 1, "head_seq": 0}}
                assert await frames(ws, 1) == recorded(DEPTH, 1)
                assert await command(ws, {"cmd": "ping"}) == {"cmd": "pong"}
                assert server.head_seq(*DEPTH) == 1
        finally:
            await server.close()

    asyncio.run(scenario())


class Replay:
    """``fastfeed replay --port 0`` in a subprocess; the URL is read from its first stdout line."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        self.proc = subprocess.Popen(
            [*FASTFEED, "replay", "--data-dir", str(data_dir), "--port", "0", *options],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("fastfeed replay listening on "), self.proc.stderr.read()
        self.url = line.split()[-1]

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            assert pipe is not None
            pipe.close()
        return code


@pytest.fixture
def recording(tmp_path: Path, sim: Simulator) -> Iterator[tuple[Path, dict[str, list[str]]]]:
    """A real recording from the simulator: three streams, a few hundred seqs each."""
    channels = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]}
    data = tmp_path / "recorded"
    with Recorder(tmp_path, data, sim.url, channels) as rec:
        rec.start()
        rec.until(
            lambda: (
                len(streams := status(data)["streams"]) == 3
                and all(s["last_seq"] >= 300 for s in streams)
            ),
            "300 seqs on every stream",
        )
        assert rec.stop() == 0
    yield data, channels


def test_a_recorded_replay_exports_the_same_frames(
    tmp_path: Path, recording: tuple[Path, dict[str, list[str]]]
) -> None:
    original, channels = recording
    lasts = {(s["channel"], s["symbol"]): s["last_seq"] for s in status(original)["streams"]}
    replay = Replay(original, "--speed", "max")
    again = tmp_path / "again"
    try:
        work = tmp_path / "second"
        work.mkdir()
        with Recorder(work, again, replay.url, channels) as rec:
            rec.start()
            rec.until(
                lambda: (
                    {(s["channel"], s["symbol"]): s["last_seq"] for s in status(again)["streams"]}
                    == lasts
                ),
                "the replay recorded to its last seq",
            )
            assert rec.stop() == 0
    finally:
        assert replay.stop() == 0
    first, second = export(original), export(again)
    assert set(first) == set(second) == set(lasts)
    for key, rows in first.items():
        assert [(r["seq"], r["frame"]) for r in second[key]] == [
            (r["seq"], r["frame"]) for r in rows
        ], key
        assert [r["seq"] for r in rows] == list(range(1, lasts[key] + 1))
