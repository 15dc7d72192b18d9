"""The Binance fixture venue speaks Binance: recorded frames first, faults exactly as asked."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
from websockets.sync.client import ClientConnection, connect

from fastfeed.venues.binance import BinanceAdapter, Market
from fastfeed.venues.events import Message, Snapshot, Subscribed
from tests.fixture_venue.binance import BinanceVenue, Faults, recorded_frames
from tests.fixture_venue.thread import running

TIMEOUT_S = 30.0
NKN = "nknusdt@depth@100ms"


@pytest.fixture
def venue() -> Iterator[BinanceVenue]:
    v = BinanceVenue(faults=Faults(drop={NKN: {3, 4}}, duplicate={NKN: {6}}, reorder={NKN: {8}}))
    with running(v):
        yield v


@contextmanager
def subscribe(url: str, *streams: str) -> Iterator[ClientConnection]:
    with connect(f"{url}/stream", open_timeout=TIMEOUT_S) as ws:
        ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": list(streams), "id": 1}).decode())
        yield ws


def test_recorded_frames_first_then_faults(venue: BinanceVenue) -> None:
    adapter = BinanceAdapter()
    recorded = [f for f in recorded_frames() if f.startswith(b'{"stream":"%s"' % NKN.encode())]
    with subscribe(venue.ws_url, NKN) as ws:
        assert adapter.parse(ws.recv(TIMEOUT_S), 0) == Subscribed(None, (), None)
        got = [ws.recv(TIMEOUT_S) for _ in range(12)]
    # Pushes 3 and 4 dropped, 6 twice, 8 after 9: exactly these recorded frames, bytes equal.
    order = [0, 1, 2, 5, 6, 6, 7, 9, 8, 10, 11, 12]
    assert [g.encode() if isinstance(g, str) else g for g in got] == [recorded[i] for i in order]


def test_renumbered_pushes_stay_contiguous() -> None:
    venue = BinanceVenue(tick_s=0.001)
    with running(venue), subscribe(venue.ws_url, "btcusdt@depth@100ms", "btcusdt@aggTrade") as ws:
        ws.recv(TIMEOUT_S)
        events = [BinanceAdapter().parse(ws.recv(TIMEOUT_S), 0) for _ in range(800)]
    last: dict[str, int] = {}
    for event in events:
        assert type(event) is Message and event.symbol == "BTCUSDT"
        assert event.seq is not None
        first = event.first_seq if event.first_seq is not None else event.seq
        if event.channel in last:
            assert first == last[event.channel] + 1
        last[event.channel] = event.seq


def test_futures_pushes_chain_by_pu() -> None:
    venue = BinanceVenue("binance-futures")
    adapter = BinanceAdapter(Market.FUTURES)
    with running(venue), subscribe(venue.ws_url, "btcusdt@depth@100ms") as ws:
        ws.recv(TIMEOUT_S)
        raws = [ws.recv(TIMEOUT_S) for _ in range(20)]
    prev = None
    for raw in raws:
        event = adapter.parse(raw, 0)
        assert type(event) is Message and event.first_seq is not None
        data = orjson.loads(raw)["data"]
        if prev is not None:
            assert data["pu"] == prev
        prev = event.seq


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_rest_snapshot_429_then_200_then_418() -> None:
    venue = BinanceVenue(faults=Faults(rest_429=1, retry_after_s=3, rest_418_from=3))
    adapter = BinanceAdapter()
    with running(venue), subscribe(venue.ws_url, NKN) as ws:
        ws.recv(TIMEOUT_S)
        ws.recv(TIMEOUT_S)  # the stream has published: the book has an id
        url = venue.rest_url + adapter.snapshot_target("NKNUSDT", 1000)
        status, headers, _ = get(url)
        assert (status, headers["Retry-After"], headers["X-MBX-USED-WEIGHT-1M"]) == (429, "3", "50")
        status, headers, body = get(url)
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "100"
        snap = adapter.parse_snapshot("depth", "NKNUSDT", body)
        assert type(snap) is Snapshot and snap.seq >= 499869752
        assert get(url)[0] == 418


def test_abort_and_age_close() -> None:
    venue = BinanceVenue(faults=Faults(abort_after=3, max_connection_s=0.5))
    with running(venue):
        with subscribe(venue.ws_url, NKN) as ws:
            frames = []
            with pytest.raises(Exception, match="no close frame"):
                while True:
                    frames.append(ws.recv(TIMEOUT_S))
            assert len(frames) == 3 and venue.aborted == 1
        # The second connection is not cut, but closed at its age limit.
        with subscribe(venue.ws_url, NKN) as ws, pytest.raises(Exception, match="1000"):
            while True:
                ws.recv(TIMEOUT_S)
        assert venue.closed_by_age == 1
