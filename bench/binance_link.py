"""CPU per frame of one venue connection's frame path: its Cython sink against the Python path.

``python -m bench.binance_link [VENUE ...]`` (default ``binance``; also ``okx``, ``bybit``,
``coinbase``) feeds the same prepared book updates (Binance ``depth@100ms``, OKX ``books``,
Bybit ``orderbook.50``, Coinbase ``level2``; each continuing its stream, 1 to 300 streams round
robin) to the two listeners a connection can have, side by side in one process:

* ``sink``: the connection's ``FrameSink`` (journal from picows' buffer, C scan, table lookup);
* ``python``: the same sink with ``divert`` set, as during a rotation's overlap: each frame is
  copied to ``bytes`` and journaled from Python by the connection's handler (what every frame
  cost before the sink served these venues).

Both journal with ``--fsync none`` (no sync in the loop). Prints JSON with the ratio.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson
import picows

from bench.buildcheck import require_release_build
from fastfeed.journal import FsyncMode, Journal, RecordKind
from fastfeed.recorder._sink import FrameSink, Scanner, StreamTable

FRAMES = 200_000
SLOT = 1


def binance(count: int, streams: int) -> list[bytes]:
    """Spot diff-depth pushes, each stream's ``U`` one past its previous ``u``."""
    last = [1000 * (i + 1) for i in range(streams)]
    out = []
    for n in range(count):
        i = n % streams
        first, last[i] = last[i] + 1, last[i] + 3
        data = {
            "e": "depthUpdate",
            "E": 1700000000000 + n,
            "s": f"S{i}USDT",
            "U": first,
            "u": last[i],
            "b": [["0.35210000", "672.00000000"]],
            "a": [["0.35260000", "3199.00000000"], ["0.35270000", "10.00000000"]],
        }
        out.append(orjson.dumps({"stream": f"s{i}usdt@depth@100ms", "data": data}))
    return out


def okx(count: int, streams: int) -> list[bytes]:
    """``books`` updates, each stream's ``prevSeqId`` its previous ``seqId``."""
    last = [1000 * (i + 1) for i in range(streams)]
    out = []
    for n in range(count):
        i = n % streams
        prev, last[i] = last[i], last[i] + 2
        data = {
            "asks": [["8476.98", "415", "0", "13"], ["8477", "7", "0", "2"]],
            "bids": [["8476.97", "256", "0", "12"]],
            "ts": str(1597026383085 + n),
            "checksum": 0,
            "prevSeqId": prev,
            "seqId": last[i],
        }
        arg = {"channel": "books", "instId": f"S{i}-USDT"}
        out.append(orjson.dumps({"arg": arg, "action": "update", "data": [data]}))
    return out


def bybit(count: int, streams: int) -> list[bytes]:
    """``orderbook.50`` deltas, each stream's ``u`` one past its previous."""
    last = [1000 * (i + 1) for i in range(streams)]
    out = []
    for n in range(count):
        i = n % streams
        last[i] += 1
        data = {"s": f"S{i}USDT", "b": [["27450.00", "0.400"]], "a": [["27451.00", "0"]]}
        data.update(u=last[i], seq=987654322 + n)
        doc = {"topic": f"orderbook.50.S{i}USDT", "type": "delta", "ts": 1709891679500 + n}
        out.append(orjson.dumps({**doc, "data": data}))
    return out


def coinbase(count: int, streams: int) -> list[bytes]:
    """``level2`` updates of the products round robin, numbered by the connection."""
    out = []
    for n in range(count):
        update = {
            "side": "bid",
            "event_time": "2026-04-07T14:30:01.456789Z",
            "price_level": "68900.00",
            "new_quantity": "2.00000000",
        }
        event = {"type": "update", "product_id": f"S{n % streams}-USD", "updates": [update]}
        doc = {"channel": "l2_data", "client_id": "", "timestamp": "2026-04-07T14:30:01.456789Z"}
        out.append(orjson.dumps({**doc, "sequence_num": n, "events": [event]}))
    return out


# venue -> (its pushes, how many reach Python: each stream's first, or the connection's)
VENUES = {
    "binance": (binance, lambda streams: streams),
    "okx": (okx, lambda streams: streams),
    "bybit": (bybit, lambda streams: streams),
    "coinbase": (coinbase, lambda streams: 1),  # sequence_num numbers the connection
}


class _Handler:
    """The sink's handler: counts what reaches Python (each stream's first push only)."""

    def __init__(self) -> None:
        self.unusual = 0

    def on_unusual_frame(self, *_: object) -> None:
        self.unusual += 1

    def on_journal_error(self, exc: Exception) -> None:
        raise exc


class _Link:
    """A diverted frame's way in Python: bytes in, journaled under the connection's slot."""

    def __init__(self, journal: Journal) -> None:
        self._append = journal.append

    def data(self, payload: bytes, binary: bool) -> None:
        self._append(RecordKind.INBOUND, SLOT, time.time_ns(), payload, 1 if binary else 0)


def run(venue: str, streams: int, divert: bool) -> dict[str, float | int | str]:
    make = picows.picows._make_test_ws_frame
    pushes, unusual = VENUES[venue]
    frames = [make(picows.WSMsgType.TEXT, p, True, False) for p in pushes(FRAMES, streams)]
    with tempfile.TemporaryDirectory(prefix="fflink-") as tmp:
        journal = Journal.open(Path(tmp), fsync=FsyncMode.NONE, segment_bytes=256 * 1024 * 1024)
        with journal:
            handler = _Handler()
            sink = FrameSink(
                journal.writer,
                Scanner(venue),
                StreamTable(),
                handler,
                _Link(journal),
                SLOT,
                None,
            )
            sink.divert = divert
            on_frame = sink.on_ws_frame
            t0, c0 = time.perf_counter(), time.process_time()
            for frame in frames:
                on_frame(None, frame)
            t1, c1 = time.perf_counter(), time.process_time()
            assert journal.accepted_lsn == FRAMES
    assert handler.unusual == (0 if divert else unusual(streams)), handler.unusual
    return {
        "venue": venue,
        "path": "python" if divert else "sink",
        "streams": streams,
        "ns_per_frame": (t1 - t0) * 1e9 / FRAMES,
        "cpu_ns_per_frame": (c1 - c0) * 1e9 / FRAMES,
    }


def main() -> None:
    require_release_build()
    results: list[dict[str, float | int | str]] = []
    for venue in sys.argv[1:] or ["binance"]:
        if venue not in VENUES:
            sys.exit(f"unknown venue {venue!r}: expected one of {', '.join(VENUES)}")
        for streams in (1, 10, 300):
            # Interleaved, each twice: a load change on a shared host hits both paths alike.
            rounds = [run(venue, streams, divert) for _ in range(2) for divert in (False, True)]
            sink = min(float(r["cpu_ns_per_frame"]) for r in rounds if r["path"] == "sink")
            python = min(float(r["cpu_ns_per_frame"]) for r in rounds if r["path"] == "python")
            results += rounds
            ratio = {"venue": venue, "streams": streams, "python_over_sink_cpu": python / sink}
            results.append(ratio)
    sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
