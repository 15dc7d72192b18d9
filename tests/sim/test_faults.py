"""Every fault mode of the simulator, observed by an independent client (websockets)."""

from __future__ import annotations

import itertools

import pytest
import websockets
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
)

from fastfeed.sim import FaultPlan, SimConfig, SimServer, serve


async def _frames_until_closed(server: SimServer, plan: FaultPlan) -> tuple[list[bytes], object]:
    async with connect(server) as ws:
        await subscribe(ws, "trade", ["A.US"])
        got: list[bytes] = []
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                got.append(await recv(ws))  # type: ignore[arg-type]
    return got, info.value


def test_abort_after_n_frames_drops_tcp_without_close_frame() -> None:
    async def body() -> None:
        plan = FaultPlan(abort_after=5)
        server = await serve(SimConfig(rate=5000, faults=plan))
        try:
            got, closed = await _frames_until_closed(server, plan)
            assert got == reference(1, "trade", "A.US", 5)
            assert closed.rcvd is None  # type: ignore[attr-defined]
        finally:
            await server.close()

    run(body)


def test_close_after_n_frames_sends_close_1012() -> None:
    async def body() -> None:
        plan = FaultPlan(close_after=7)
        server = await serve(SimConfig(rate=5000, faults=plan))
        try:
            got, closed = await _frames_until_closed(server, plan)
            assert got == reference(1, "trade", "A.US", 7)
            assert closed.rcvd.code == 1012  # type: ignore[attr-defined]
        finally:
            await server.close()

    run(body)


async def _seqs(plan: FaultPlan, count: int) -> list[bytes]:
    server = await serve(SimConfig(rate=20_000, faults=plan))
    try:
        async with connect(server) as ws:
            await subscribe(ws, "trade", ["A.US"])
            return await pushes(ws, count)
    finally:
        await server.close()


def test_skip_duplicate_reorder_are_seeded_and_reproducible() -> None:
    async def body() -> None:
        want = reference(1, "trade", "A.US", 1000)
        plan = FaultPlan(skip_rate=0.05, duplicate_rate=0.05, reorder_rate=0.05)
        first = await _seqs(plan, 300)
        assert first == await _seqs(plan, 300)  # same plan, same frames
        for frame in first:
            assert frame == want[seq_of(frame) - 1]  # every frame is the exact content
        seqs = [seq_of(f) for f in first]
        assert len(set(seqs)) < len(seqs)  # duplicates
        assert any(b < a for a, b in itertools.pairwise(seqs))  # reorders
        assert set(range(1, max(seqs))) - set(seqs)  # skips
        assert first != await _seqs(
            FaultPlan(seed=2, skip_rate=0.05, duplicate_rate=0.05, reorder_rate=0.05), 300
        )

    run(body)


def test_skipped_seqs_are_recoverable_by_resume() -> None:
    async def body() -> None:
        plan = FaultPlan(skip_rate=0.2, connections=1)
        server = await serve(SimConfig(rate=20_000, faults=plan))
        try:
            async with connect(server) as ws:
                await subscribe(ws, "trade", ["A.US"])
                seqs = [seq_of(f) for f in await pushes(ws, 50)]
            missing = min(set(range(1, max(seqs))) - set(seqs))
            async with connect(server) as ws:  # second connection: no faults
                ack = await subscribe(ws, "trade", ["A.US"], resume={"A.US": missing})
                assert ack["data"]["streams"]["A.US"]["first_seq"] == missing
                frames = await pushes(ws, 10)
            assert frames == reference(1, "trade", "A.US", missing + 9)[missing - 1 :]
        finally:
            await server.close()

    run(body)


def test_garbage_frames_of_every_kind() -> None:
    async def body() -> None:
        plan = FaultPlan(
            garbage_rate=0.5,
            garbage_kinds=("text", "binary", "truncated", "shape"),
        )
        frames = await _seqs(plan, 200)
        pushes_ = {f: None for f in reference(1, "trade", "A.US", 400)}
        kinds: set[str] = set()
        for frame in frames:
            if frame in pushes_:
                continue
            if frame == b"this is not JSON":
                kinds.add("text")
            elif frame == b'{"cmd":"depth","data":["not","an","object"]}':
                kinds.add("shape")
            elif any(p.startswith(frame) for p in pushes_):
                kinds.add("truncated")
            else:
                assert len(frame) == 16  # random binary
                kinds.add("binary")
        assert kinds == {"text", "binary", "truncated", "shape"}

    run(body)


def test_oversized_frame_trips_the_client_limit() -> None:
    async def body() -> None:
        plan = FaultPlan(garbage_rate=1.0, garbage_kinds=("oversized",), oversize_bytes=70_000)
        server = await serve(SimConfig(rate=5000, faults=plan))
        try:
            await _closed_as_too_big(server)
        finally:
            await server.close()

    run(body)


async def _closed_as_too_big(server: SimServer, resume: dict[str, int] | None = None) -> None:
    """A client whose frame limit is 64 KiB subscribes and closes with 1009 (message too big)."""
    async with connect(server, max_size=65_536) as ws:
        await subscribe(ws, "trade", ["A.US"], resume)
        with pytest.raises(websockets.ConnectionClosedError) as info:
            await recv(ws)
        assert info.value.sent is not None and info.value.sent.code == 1009


def test_an_oversized_push_keeps_its_seq_and_is_resent_on_resume() -> None:
    async def body() -> None:
        plan = FaultPlan(oversize_bytes=70_000, oversize_pushes=(("trade", "A.US", 3),))
        server = await serve(SimConfig(rate=5000, faults=plan))
        try:
            want = reference(1, "trade", "A.US", 5)
            async with connect(server, max_size=None) as ws:
                await subscribe(ws, "trade", ["A.US"])
                live = await pushes(ws, 4)
            async with connect(server, max_size=None) as ws:
                await subscribe(ws, "trade", ["A.US"], {"A.US": 2})
                resent = await pushes(ws, 4)
            for big in (live[2], resent[1]):
                assert len(big) == 70_000 and seq_of(big) == 3
                assert big.startswith(want[2][:-1] + b',"pad":"xxx') and big.endswith(b'x"}')
            assert live[:2] + live[3:] == want[:2] + want[3:4] and resent[2:] == want[3:5]
            await _closed_as_too_big(server, {"A.US": 3})
        finally:
            await server.close()

    run(body)


def test_stall_withholds_data_and_pongs_then_carries_on() -> None:
    async def body() -> None:
        plan = FaultPlan(stall_after=3, stall_s=0.3)
        server = await serve(SimConfig(rate=5000, faults=plan))
        try:
            async with connect(server) as ws:
                await subscribe(ws, "trade", ["A.US"])
                assert await pushes(ws, 3) == reference(1, "trade", "A.US", 3)
                client = next(iter(server.sessions))
                await until(lambda: client.stalled)
                await send(ws, {"cmd": "ping"})  # swallowed by the stall
                await until(lambda: not client.stalled)
                after = await pushes(ws, 20)
                assert after == reference(1, "trade", "A.US", 23)[3:]  # no gap, no pong
        finally:
            await server.close()

    run(body)


def test_rejected_subscription() -> None:
    async def body() -> None:
        plan = FaultPlan(reject_symbols=frozenset({"BAD.US"}), reject_code=3001)
        server = await serve(SimConfig(faults=plan))
        try:
            async with connect(server) as ws:
                assert await subscribe(ws, "depth", ["A.US", "BAD.US"]) == {
                    "cmd": "subscribe",
                    "code": 3001,
                    "message": "Subscription rejected",
                    "data": {"channel": "depth", "symbols": ["BAD.US"]},
                }
                assert (await subscribe(ws, "depth", ["A.US"]))["code"] == 0
        finally:
            await server.close()

    run(body)


def test_refused_connections_get_503_then_accepted() -> None:
    async def body() -> None:
        server = await serve(SimConfig(faults=FaultPlan(refuse_connections=2)))
        try:
            for _ in range(2):
                with pytest.raises(websockets.InvalidStatus) as info:
                    async with connect(server):
                        pass
                assert info.value.response.status_code == 503
            async with connect(server) as ws:
                await send(ws, {"cmd": "ping"})
                assert await recv_doc(ws) == {"cmd": "pong"}
            assert (server.refused, server.accepted) == (2, 1)
        finally:
            await server.close()

    run(body)


def test_fault_plan_validation() -> None:
    with pytest.raises(ValueError, match="skip_rate"):
        FaultPlan(skip_rate=1.5)
    with pytest.raises(ValueError, match="garbage kinds"):
        FaultPlan(garbage_kinds=("nope",))
