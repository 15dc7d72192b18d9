"""REST snapshots for venues that cannot replay: one GET per request, paced and rate-limited.

The HTTP client is h11 (pure Python, sans-I/O HTTP/1.1, the model our adapters follow) over
asyncio streams: a snapshot is one GET on a fresh connection, rare enough (at subscribe and
after a gap) that keep-alive is not worth its state, and nothing compiled joins the zipapp.

``SnapshotFetcher`` owns the policy (the I/O layer's: it reads the clock):
* at most ``concurrency`` requests in flight;
* the request weight the venue reports (``X-MBX-USED-WEIGHT-1M`` on Binance) plus what is in
  flight never passes ``budget`` of the allowed weight per minute: past it, wait for the next
  minute;
* 429: wait ``Retry-After`` seconds (all requests), then ask again;
* 418 (Binance: the IP is banned for ignoring 429s): stop fetching snapshots, say why once;
* other failures (network, 5xx): ask again after ``retry_s``.
Every response, refusals included, goes to ``on_response`` first: the recorder journals it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

import h11

from fastfeed import defaults
from fastfeed.derive.streams import StreamKey
from fastfeed.venues.base import SnapshotVenue

__all__ = ["HttpResponse", "SnapshotFetcher", "http_get", "safe_url"]

log = logging.getLogger("fastfeed.rest")

READ_BYTES = 65536
HTTP_TOO_MANY = 429
HTTP_BANNED = 418  # Binance: "IP has been auto-banned for continuing to send requests after 429"


class HttpResponse(NamedTuple):
    """A response: status, headers (names lower case), the exact body."""

    status: int
    headers: dict[str, str]
    body: bytes


async def http_get(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    timeout_s: float = defaults.REST_TIMEOUT_S,
    max_body: int = defaults.MAX_FRAME_BYTES,
) -> HttpResponse:
    """GET ``url`` (http:// or https://) on a fresh connection.

    Raises:
        OSError, TimeoutError, h11.ProtocolError: the request failed (callers retry).
        ValueError: the body is over ``max_body`` bytes.
    """
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = h11.Connection(h11.CLIENT)
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=(ssl_context or ssl.create_default_context()) if https else None,
            server_hostname=host if https else None,
        )
        try:
            request = h11.Request(
                method="GET",
                target=target,
                headers=[
                    ("Host", parts.netloc.rpartition("@")[2]),
                    ("User-Agent", "fastfeed"),
                    ("Accept", "application/json"),
                    ("Connection", "close"),
                ],
            )
            writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
            await writer.drain()
            status, headers, chunks, size = 0, {}, [], 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(READ_BYTES))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > max_body:
                        raise ValueError(f"response body over {max_body} bytes")
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return HttpResponse(status, headers, b"".join(chunks))
        finally:
            writer.close()


class SnapshotFetcher:
    """Fetches stream snapshots on request, within the venue's limits (module docstring)."""

    def __init__(
        self,
        adapter: SnapshotVenue,
        base_url: str,
        on_response: Callable[[StreamKey, str, HttpResponse], None],
        *,
        ssl_context: ssl.SSLContext | None = None,
        concurrency: int = defaults.SNAPSHOT_CONCURRENCY,
        limit: int = defaults.SNAPSHOT_LEVELS,
        budget: float = defaults.REST_WEIGHT_BUDGET,
        retry_s: float = defaults.SNAPSHOT_RETRY_S,
    ) -> None:
        self._adapter = adapter
        self._base = base_url.rstrip("/")
        self._on_response = on_response
        self._ssl = ssl_context
        self._limit = limit
        self._weight = adapter.snapshot_weight(limit)
        self._budget = int(adapter.weight_per_minute * budget)
        self._retry_s = retry_s
        self._queue: asyncio.Queue[StreamKey] = asyncio.Queue()
        self._queued: set[StreamKey] = set()
        self._workers = concurrency
        self._used = 0  # weight used in the current minute, as the venue last said (+ ours)
        self._minute = 0
        self._paused_until = 0.0  # monotonic: after a 429, nobody asks before this
        self.banned: str | None = None  # why snapshots stopped (418), once it happened
        self.fetched = 0
        self.refused = 0

    def request(self, key: StreamKey) -> None:
        """Ask for a snapshot of ``key`` (a request already waiting covers it)."""
        if self.banned is None and key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def pending(self) -> int:
        """Snapshots asked for and not yet fetched."""
        return len(self._queued)

    async def run(self) -> None:
        """Serve requests until cancelled (the owner's task group cancels it at shutdown)."""
        async with asyncio.TaskGroup() as workers:
            for n in range(self._workers):
                workers.create_task(self._worker(), name=f"snapshot-{n}")

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            if self.banned is not None:
                self._queued.discard(key)
                continue
            await self._wait_for_room()
            url = self._base + self._adapter.snapshot_target(key.symbol, self._limit)
            try:
                response = await http_get(url, ssl_context=self._ssl)
            except (OSError, TimeoutError, ValueError, h11.ProtocolError) as exc:
                log.warning("snapshot of %s failed: %s; asking again", key, exc or type(exc))
                await asyncio.sleep(self._retry_s)
                self._requeue(key)
                continue
            self._account(response)
            self._on_response(key, url, response)
            if response.status == 200:
                self.fetched += 1
                self._queued.discard(key)
                continue
            self.refused += 1
            retry_after = _retry_after(response, self._retry_s)
            if response.status == HTTP_BANNED:
                self.banned = (
                    f"the venue banned this address from REST (HTTP 418, retry after"
                    f" {retry_after:g} s): snapshots stopped; gaps stay open until restart"
                )
                log.error("%s", self.banned)
                self._queued.clear()
                continue
            if response.status == HTTP_TOO_MANY:
                self._paused_until = max(self._paused_until, time.monotonic() + retry_after)
                log.warning("snapshots rate-limited (HTTP 429): waiting %g s", retry_after)
            else:
                log.warning("snapshot of %s: HTTP %d; asking again", key, response.status)
                await asyncio.sleep(self._retry_s)
            self._requeue(key)

    def _requeue(self, key: StreamKey) -> None:
        if self.banned is None:
            self._queue.put_nowait(key)
        else:
            self._queued.discard(key)

    async def _wait_for_room(self) -> None:
        """Hold the next request until a 429 pause is over and the weight budget has room."""
        while True:
            now = time.monotonic()
            if now < self._paused_until:
                await asyncio.sleep(self._paused_until - now)
                continue
            minute = int(time.time() // 60)
            if minute != self._minute:
                self._minute, self._used = minute, 0
            if self._used + self._weight <= self._budget:
                self._used += self._weight  # ours until the venue's header says otherwise
                return
            await asyncio.sleep(60 - time.time() % 60)

    def _account(self, response: HttpResponse) -> None:
        used = response.headers.get(self._adapter.weight_header)
        if used is not None and used.isdigit():
            self._used = max(self._used, int(used))


def safe_url(url: str) -> str:
    """``url`` without user info (the only place a REST URL could carry a credential)."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _retry_after(response: HttpResponse, default: float) -> float:
    """``Retry-After`` in seconds (RFC 9110 §10.2.3; venues send the delay form)."""
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else default
