"""The simulator against an independent client (websockets): protocol conformance."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import websockets
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from sim_helpers import (
    connect,
    pushes,
    recv,
    recv_doc,
    reference,
    run,
    send,
    seq_of,
    subscribe,
    until,
    url,
)

from fastfeed.sim import SimConfig, message, serve


def test_subscribe_ack_then_live_pushes_exact_bytes() -> None:
    async def body() -> None:
        server = await serve(SimConfig(rate=2000))
        try:
            async with connect(server) as ws:
                ack = await subscribe(ws, "depth", ["AAPL.US", "TSLA.US"])
                assert ack == {
                    "cmd": "subscribe",
                    "code": 0,
                    "message": "success",
                    "data": {
                        "channel": "depth",
                        "symbols": ["AAPL.US", "TSLA.US"],
                        "streams": {
                            "AAPL.US": {"first_seq": 1, "head_seq": 0},
                            "TSLA.US": {"first_seq": 1, "head_seq": 0},
                        },
                    },
                }
                got: dict[str, list[bytes]] = {"AAPL.US": [], "TSLA.US": []}
                for frame in await pushes(ws, 40):
                    got[orjson.loads(frame)["data"]["symbol"]].append(frame)
                for symbol, frames in got.items():
                    assert frames == reference(1, "depth", symbol, len(frames))
        finally:
            await server.close()

    run(body)


def test_resume_replays_exactly_the_missed_seqs_then_live() -> None:
    async def body() -> None:
        server = await serve(SimConfig(rate=5000, streams=(("trade", "AAPL.US"),)))
        try:
            await until(lambda: server.head_seq("trade", "AAPL.US") >= 300)
            async with connect(server) as ws:
                ack = await subscribe(ws, "trade", ["AAPL.US"], resume={"AAPL.US": 100})
                stream = ack["data"]["streams"]["AAPL.US"]
                assert stream["first_seq"] == 100
                head = stream["head_seq"]
                assert head >= 300
                frames = await pushes(ws, head - 99 + 50)  # all the replay and 50 live
                want = reference(1, "trade", "AAPL.US", head + 50)[99:]
                assert frames == want
        finally:
            await server.close()

    run(body)


def test_resume_past_evicted_history_starts_at_first_held_seq() -> None:
    async def body() -> None:
        config = SimConfig(rate=5000, history_messages=50, streams=(("ticker", "X.US"),))
        server = await serve(config)
        try:
            await until(lambda: server.head_seq("ticker", "X.US") >= 200)
            async with connect(server) as ws:
                ack = await subscribe(ws, "ticker", ["X.US"], resume={"X.US": 1})
                stream = ack["data"]["streams"]["X.US"]
                assert stream["first_seq"] == stream["head_seq"] - 49
                first = stream["first_seq"]
                assert await pushes(ws, 3) == [
                    message(1, "ticker", "X.US", s) for s in range(first, first + 3)
                ]
        finally:
            await server.close()

    run(body)


def test_start_seq_numbers_on_with_the_same_bytes_and_holds_nothing_older() -> None:
    """A restarted venue (--start-seq): seqs go on where it left off; older ones are gone."""

    async def body() -> None:
        config = SimConfig(rate=5000, start_seq=700, streams=(("depth", "A.US"),))
        server = await serve(config)
        try:
            assert server.first_seq("depth", "A.US") == 700
            await until(lambda: server.head_seq("depth", "A.US") >= 800)
            async with connect(server) as ws:
                ack = await subscribe(ws, "depth", ["A.US"], resume={"A.US": 650})
                stream = ack["data"]["streams"]["A.US"]
                assert stream["first_seq"] == 700
                assert await pushes(ws, 100) == reference(1, "depth", "A.US", 799)[699:]
        finally:
            await server.close()

    run(body)


def test_without_resume_starts_at_next_live_and_resume_ahead_is_capped() -> None:
    async def body() -> None:
        server = await serve(SimConfig(rate=5000, streams=(("depth", "A.US"),)))
        try:
            await until(lambda: server.head_seq("depth", "A.US") >= 20)
            async with connect(server) as ws:
                ack = await subscribe(ws, "depth", ["A.US"])
                stream = ack["data"]["streams"]["A.US"]
                assert stream["first_seq"] == stream["head_seq"] + 1
                assert seq_of((await pushes(ws, 1))[0]) == stream["first_seq"]
            async with connect(server) as ws:
                ack = await subscribe(ws, "depth", ["A.US"], resume={"A.US": 10**9})
                stream = ack["data"]["streams"]["A.US"]
                assert stream["first_seq"] == stream["head_seq"] + 1
        finally:
            await server.close()

    run(body)


def test_ping_pong_and_websocket_ping() -> None:
    async def body() -> None:
        server = await serve(SimConfig())
        try:
            async with connect(server) as ws:
                await send(ws, {"cmd": "ping"})
                assert await recv(ws) == b'{"cmd":"pong"}'
                waiter = await ws.ping(b"abc")
                await until(waiter.done)
        finally:
            await server.close()

    run(body)


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        ("not json", {"cmd": "error", "code": 2001, "message": "expected a JSON object"}),
        (
            "[1]",
            {"cmd": "error", "code": 2001, "message": 'expected an object with a string "cmd"'},
        ),
        ('{"cmd":"dance"}', {"cmd": "error", "code": 2001, "message": "unknown command 'dance'"}),
        (
            '{"cmd":"subscribe","data":{"channel":"depth"}}',
            {
                "cmd": "subscribe",
                "code": 2001,
                "message": 'expected "channel" and a non-empty "symbols" array of strings',
            },
        ),
        (
            '{"cmd":"subscribe","data":{"channel":"news","symbols":["A.US"]}}',
            {
                "cmd": "subscribe",
                "code": 2002,
                "message": "Unknown channel 'news'",
                "data": {"channel": "news", "symbols": ["A.US"]},
            },
        ),
        (
            '{"cmd":"subscribe","data":{"channel":"depth","symbols":["A.US","bad symbol"]}}',
            {
                "cmd": "subscribe",
                "code": 2002,
                "message": "Unknown symbol",
                "data": {"channel": "depth", "symbols": ["bad symbol"]},
            },
        ),
        (
            '{"cmd":"subscribe","data":{"channel":"depth","symbols":["A.US"],"resume":{"A.US":0}}}',
            {
                "cmd": "subscribe",
                "code": 2001,
                "message": 'expected "resume" {SYMBOL: seq >= 1}',
                "data": {"channel": "depth", "symbols": ["A.US"]},
            },
        ),
    ],
)
def test_bad_requests_get_exact_errors(frame: str, reply: dict[str, object]) -> None:
    async def body() -> None:
        server = await serve(SimConfig())
        try:
            async with connect(server) as ws:
                await ws.send(frame)
                assert await recv_doc(ws) == reply
                await send(ws, {"cmd": "ping"})  # the connection is still usable
                assert await recv(ws) == b'{"cmd":"pong"}'
        finally:
            await server.close()

    run(body)


def test_command_rate_limit_3001() -> None:
    async def body() -> None:
        server = await serve(SimConfig(commands_per_s=3))
        try:
            async with connect(server) as ws:
                for _ in range(4):
                    await send(ws, {"cmd": "ping"})
                replies = [await recv(ws) for _ in range(4)]
                assert replies[:3] == [b'{"cmd":"pong"}'] * 3
                assert orjson.loads(replies[3]) == {
                    "cmd": "ping",
                    "code": 3001,
                    "message": "Rate limit exceeded",
                }
        finally:
            await server.close()

    run(body)


def test_bad_api_key_gets_1001_then_close() -> None:
    async def body() -> None:
        server = await serve(SimConfig(api_key="secret"))
        try:
            async with connect(server, "api_key=wrong") as ws:
                assert await recv_doc(ws) == {
                    "cmd": "error",
                    "code": 1001,
                    "message": "Invalid API key",
                }
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await recv(ws)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1008
            async with connect(server, "api_key=secret") as ws:
                await send(ws, {"cmd": "ping"})
                assert await recv(ws) == b'{"cmd":"pong"}'
        finally:
            await server.close()

    run(body)


def test_unknown_path_is_404() -> None:
    async def body() -> None:
        server = await serve(SimConfig())
        try:
            with pytest.raises(websockets.InvalidStatus) as info:
                async with websockets.connect(url(server, path="/v2/other")):
                    pass
            assert info.value.response.status_code == 404
        finally:
            await server.close()

    run(body)


def test_unsubscribe_acks_and_stops_the_stream() -> None:
    async def body() -> None:
        server = await serve(SimConfig(rate=5000))
        try:
            async with connect(server) as ws:
                await subscribe(ws, "trade", ["A.US"])
                await pushes(ws, 5)
                await send(
                    ws, {"cmd": "unsubscribe", "data": {"channel": "trade", "symbols": ["A.US"]}}
                )
                while (doc := await recv_doc(ws))["cmd"] == "trade":
                    pass
                assert doc == {
                    "cmd": "unsubscribe",
                    "code": 0,
                    "message": "success",
                    "data": {"channel": "trade", "symbols": ["A.US"]},
                }
                head = server.head_seq("trade", "A.US")
                await until(lambda: server.head_seq("trade", "A.US") > head + 20)
                await send(ws, {"cmd": "ping"})
                assert await recv(ws) == b'{"cmd":"pong"}'  # no push in between
        finally:
            await server.close()

    run(body)


def test_plain_tickdb_has_no_seq_no_streams_and_ignores_resume() -> None:
    async def body() -> None:
        server = await serve(SimConfig(rate=5000, plain_tickdb=True, streams=(("depth", "A.US"),)))
        try:
            await until(lambda: server.head_seq("depth", "A.US") >= 10)
            async with connect(server) as ws:
                ack = await subscribe(ws, "depth", ["A.US"], resume={"A.US": 1})
                assert ack == {
                    "cmd": "subscribe",
                    "code": 0,
                    "message": "success",
                    "data": {"channel": "depth", "symbols": ["A.US"]},
                }
                frames = await pushes(ws, 5)
                want = reference(1, "depth", "A.US", 5000, plain=True)
                start = want.index(frames[0])
                assert start >= 10  # live, not replayed from 1
                assert frames == want[start : start + 5]
                assert b'"seq"' not in frames[0]
        finally:
            await server.close()

    run(body)


def test_permessage_deflate_negotiated_and_frames_decompress_exactly() -> None:
    async def body() -> None:
        server = await serve(SimConfig(rate=5000, deflate=True))
        try:
            async with connect(server, compression="deflate") as ws:
                assert ws.response.headers["Sec-WebSocket-Extensions"].startswith(
                    "permessage-deflate"
                )
                await subscribe(ws, "depth", ["A.US"])
                assert await pushes(ws, 30) == reference(1, "depth", "A.US", 30)
            async with connect(server) as ws:  # no offer: no compression
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
                await subscribe(ws, "depth", ["B.US"])
                assert await pushes(ws, 3) == reference(1, "depth", "B.US", 3)
        finally:
            await server.close()

    run(body)


def test_stamp_send_time_adds_sent_ns_and_nothing_else() -> None:
    async def body() -> None:
        server = await serve(SimConfig(rate=5000, stamp_send_time=True))
        try:
            async with connect(server) as ws:
                await subscribe(ws, "ticker", ["A.US"])
                frames = await pushes(ws, 5)
            for frame, want in zip(frames, reference(1, "ticker", "A.US", 5), strict=True):
                doc = orjson.loads(frame)
                assert isinstance(doc.pop("sent_ns"), int)
                assert doc == orjson.loads(want)
        finally:
            await server.close()

    run(body)


def test_burst_mode_sends_in_order_without_gaps() -> None:
    """A flood needs a fast reader: picows (Cython) here, since websockets parses in Python."""

    class Reader(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.frames: list[bytes] = []
            self.done = asyncio.get_running_loop().create_future()

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            self.frames.append(frame.get_payload_as_bytes())
            if len(self.frames) == 20_001 and not self.done.done():
                self.done.set_result(None)
                transport.disconnect()

    async def body() -> None:
        server = await serve(SimConfig(burst=True))
        try:
            transport, reader = await ws_connect(Reader, url(server))
            transport.send(
                WSMsgType.TEXT, b'{"cmd":"subscribe","data":{"channel":"trade","symbols":["A.US"]}}'
            )
            await reader.done
            await transport.wait_disconnected()
            assert orjson.loads(reader.frames[0])["code"] == 0
            assert reader.frames[1:20_001] == reference(1, "trade", "A.US", 20_000)
        finally:
            await server.close()

    run(body)


def test_slow_reader_is_dropped_and_told() -> None:
    async def body() -> None:
        config = SimConfig(rate=50_000, max_client_buffer=256 * 1024)
        server = await serve(config)
        try:
            # A raw client that subscribes and then never reads a byte.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await reader.readuntil(b"\r\n\r\n")
            command = b'{"cmd":"subscribe","data":{"channel":"depth","symbols":["A.US"]}}'
            mask = b"\x00\x00\x00\x00"  # a zero mask leaves the payload as is
            writer.write(bytes((0x81, 0x80 | len(command))) + mask + command)
            await until(lambda: server.slow_drops == 1, timeout=20)
            await until(lambda: not server.sessions)
            writer.close()
        finally:
            await server.close()

    run(body)


def test_standalone_cli_serves_until_sigterm() -> None:
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "fastfeed", "sim", "--port", "0", "--seed", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("fastfeed sim listening on ws://127.0.0.1:")
        endpoint = line.split()[-1]

        async def body() -> None:
            async with websockets.connect(endpoint, compression=None) as ws:
                await subscribe(ws, "trade", ["A.US"])
                assert await pushes(ws, 2) == reference(5, "trade", "A.US", 2)

        run(body)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
