"""Metrics pieces without a recorder: address parsing, health rule, histogram, gap tally, server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fastfeed import defaults
from fastfeed.derive.gaptally import GapTally
from fastfeed.derive.streams import Gap, GapState, StreamKey
from fastfeed.errors import ConfigError, FastfeedError
from fastfeed.histogram import Histogram
from fastfeed.recorder.metrics import MetricsServer, health_problem, make_registry, parse_listen
from fastfeed.recorder.statusline import Status

A = StreamKey("depth", "AAPL.US")
B = StreamKey("trade", "BTC.CC")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9464", (defaults.METRICS_HOST, 9464)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9464", ("::1", 9464)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    "value", ["", "port", "localhost:9464", "1.2.3:80", "127.0.0.1:x", "70000"]
)
def test_parse_listen_refuses(value: str) -> None:
    with pytest.raises(ConfigError, match="metrics"):
        parse_listen(value)


def _status(accepted: int = 100, applied: int = 90) -> Status:
    return Status(
        frames=1,
        records=1,
        accepted_lsn=accepted,
        durable_lsn=accepted,
        applied_lsn=applied,
        gaps_open=0,
        reconnects=0,
        malformed=0,
        connected=True,
    )


def test_health_rule() -> None:
    assert health_problem(_status(), 0.0, 10.0, 1000) is None
    assert health_problem(_status(), 10.0, 10.0, 1000) is None  # at the watchdog: not yet
    assert health_problem(_status(), 10.5, 10.0, 1000) == (
        "connection down for 10.5 s (watchdog 10 s)"
    )
    assert health_problem(_status(5000, 3999), 0.0, 10.0, 1000) == (
        "snapshot lag 1001 records exceeds 1000"
    )


def test_histogram_buckets_are_upper_inclusive() -> None:
    h = Histogram((0.001, 0.01))
    for value in (0.0005, 0.001, 0.002, 0.01, 5.0):
        h.observe(value)
    counts, total = h.snapshot()
    assert counts == [2, 2, 1]
    assert total == pytest.approx(5.0135)


def _gap(gap_id: int, key: StreamKey, state: GapState, to_ns: int | None = None) -> Gap:
    seq = None if key is B else gap_id
    return Gap(gap_id, key, seq, seq, 1, to_ns, state, "test")


def test_gap_tally_counts_each_transition_once() -> None:
    tally = GapTally()
    tally.add([_gap(1, A, GapState.OPEN), _gap(2, B, GapState.LOST)])
    tally.add([_gap(1, A, GapState.FILLED), _gap(2, B, GapState.LOST, to_ns=9)])  # B: end time
    tally.add([_gap(3, A, GapState.OPEN)])
    tally.add([_gap(3, A, GapState.LOST), _gap(4, A, GapState.OPEN), _gap(5, A, GapState.FILLED)])
    a, b = tally.by_stream[A], tally.by_stream[B]
    assert (a.opened, a.filled, a.lost) == (4, 2, 1)
    assert (b.opened, b.filled, b.lost) == (1, 0, 1)


def test_gap_tally_after_restore_counts_only_what_changes() -> None:
    # A restored tracker holds open gap 7 and plain gap 8 waiting for its end time.
    tally = GapTally([_gap(7, A, GapState.OPEN), _gap(8, B, GapState.LOST)])
    tally.add([_gap(7, A, GapState.FILLED), _gap(8, B, GapState.LOST, to_ns=5)])
    tally.add([_gap(9, A, GapState.OPEN)])
    a, b = tally.by_stream[A], tally.by_stream[B]
    assert (a.opened, a.filled, a.lost) == (1, 1, 0)
    assert (b.opened, b.filled, b.lost) == (0, 0, 0)


class _One(Collector):
    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("fastfeed_test_value", "a test gauge", value=42)


async def _request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    reply = await reader.read()
    writer.close()
    await writer.wait_closed()
    return reply


def test_server_routes() -> None:
    problem: list[str | None] = [None]

    async def scenario() -> dict[str, bytes]:
        server = MetricsServer("127.0.0.1", 0, make_registry(_One()), lambda: problem[0])
        await server.start()
        try:
            replies = {}
            for name, raw in (
                ("metrics", b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
                ("healthy", b"GET /healthz HTTP/1.0\r\n\r\n"),
                ("head", b"HEAD /metrics HTTP/1.1\r\n\r\n"),
                ("missing", b"GET /nope HTTP/1.1\r\n\r\n"),
                ("post", b"POST /metrics HTTP/1.1\r\n\r\n"),
                ("garbage", b"hello\r\n\r\n"),
            ):
                replies[name] = await _request(server.port, raw)
            problem[0] = "connection down for 12.0 s (watchdog 10 s)"
            replies["sick"] = await _request(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
            # A scraper that never finishes its request head is not waited for at close.
            _, idle = await asyncio.open_connection("127.0.0.1", server.port)
            return replies
        finally:
            await server.close()
            idle.close()

    replies = asyncio.run(scenario())
    head, _, body = replies["metrics"].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4" in head
    assert b"\nfastfeed_test_value 42.0\n" in b"\n" + body
    assert b"process_resident_memory_bytes " in body
    assert replies["healthy"].endswith(b"\r\n\r\nok\n")
    assert replies["head"].startswith(b"HTTP/1.1 200 OK") and replies["head"].endswith(b"\r\n\r\n")
    assert replies["missing"].startswith(b"HTTP/1.1 404 ")
    assert replies["post"].startswith(b"HTTP/1.1 405 ")
    assert replies["garbage"].startswith(b"HTTP/1.1 400 ")
    assert replies["sick"].startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert replies["sick"].endswith(b"\r\n\r\nconnection down for 12.0 s (watchdog 10 s)\n")


def test_server_port_in_use_is_a_runtime_error_not_a_config_error() -> None:
    async def scenario() -> None:
        first = MetricsServer("127.0.0.1", 0, make_registry(_One()), lambda: None)
        await first.start()
        try:
            second = MetricsServer("127.0.0.1", first.port, make_registry(_One()), lambda: None)
            # Exit 1, not 2: the documented unit restarts on 1 and the port may be free then.
            with pytest.raises(
                FastfeedError, match=r"cannot serve metrics on 127\.0\.0\.1:\d+"
            ) as info:
                await second.start()
            assert not isinstance(info.value, ConfigError)
        finally:
            await first.close()

    asyncio.run(scenario())
