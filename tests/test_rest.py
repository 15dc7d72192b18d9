"""REST snapshots: the h11 client and the fetcher's 429 and 418 handling, on loopback."""

from __future__ import annotations

import asyncio

import pytest

from fastfeed.derive.streams import StreamKey
from fastfeed.recorder.rest import HttpResponse, SnapshotFetcher, http_get, safe_url
from fastfeed.venues.binance import BinanceAdapter
from tests.fixture_venue.rest import Response, RestServer

TIMEOUT_S = 30.0
BTC = StreamKey("depth", "BTCUSDT")


def test_safe_url_drops_user_info_only() -> None:
    assert safe_url("https://u:pw@h:1/p?symbol=X") == "https://h:1/p?symbol=X"
    assert safe_url("http://h/p") == "http://h/p"


async def scripted(replies: list[Response]) -> tuple[RestServer, str, list[str]]:
    targets: list[str] = []

    def handler(target: str) -> Response:
        targets.append(target)
        return replies.pop(0)

    server = RestServer(handler)
    return server, await server.start(), targets


def test_http_get_returns_status_headers_and_exact_body() -> None:
    async def main() -> HttpResponse:
        body = b'{"lastUpdateId":1,\n "bids":[],"asks":[]}'
        server, url, targets = await scripted([Response(200, body, [("X-Test", "1")])])
        try:
            got = await http_get(url + "/api/v3/depth?symbol=BTCUSDT", ssl_context=None)
        finally:
            await server.close()
        assert targets == ["/api/v3/depth?symbol=BTCUSDT"]
        return got

    got = asyncio.run(main())
    assert (got.status, got.headers["x-test"]) == (200, "1")
    assert got.body == b'{"lastUpdateId":1,\n "bids":[],"asks":[]}'


def run_fetcher(replies: list[Response], until: int) -> tuple[SnapshotFetcher, list[int]]:
    """Ask for BTC's snapshot twice (coalesced) and serve ``replies`` until ``until`` answers."""
    seen: list[int] = []

    async def main() -> SnapshotFetcher:
        server, url, _ = await scripted(replies)
        done = asyncio.Event()

        def on_response(key: StreamKey, target: str, response: HttpResponse) -> None:
            assert key == BTC and target.endswith("symbol=BTCUSDT&limit=1000")
            seen.append(response.status)
            if len(seen) == until:
                done.set()

        fetcher = SnapshotFetcher(BinanceAdapter(), url, on_response, retry_s=0.01)
        fetcher.request(BTC)
        fetcher.request(BTC)  # already waiting: the same request covers it
        task = asyncio.create_task(fetcher.run())
        try:
            await asyncio.wait_for(done.wait(), TIMEOUT_S)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await server.close()
        return fetcher

    return asyncio.run(main()), seen


def test_429_waits_retry_after_then_fetches() -> None:
    ok = Response(200, b'{"lastUpdateId":7,"bids":[],"asks":[]}', [("X-MBX-USED-WEIGHT-1M", "60")])
    fetcher, seen = run_fetcher([Response(429, b"{}", [("Retry-After", "1")]), ok], until=2)
    assert seen == [429, 200]
    assert (fetcher.fetched, fetcher.refused, fetcher.pending(), fetcher.banned) == (1, 1, 0, None)


def test_418_stops_snapshots_for_good() -> None:
    fetcher, seen = run_fetcher([Response(418, b"{}", [("Retry-After", "120")])], until=1)
    assert seen == [418]
    assert fetcher.banned is not None and "HTTP 418" in fetcher.banned
    fetcher.request(BTC)
    assert fetcher.pending() == 0  # nothing is asked after a ban
