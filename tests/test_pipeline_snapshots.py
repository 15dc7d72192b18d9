"""The pipeline on a venue that cannot replay (Binance): ranges, REST snapshots, gap markers."""

from __future__ import annotations

from pathlib import Path

import orjson

from fastfeed.derive.pipeline import Pipeline
from fastfeed.derive.rest_record import RestHead, decode_rest, encode_rest
from fastfeed.derive.streams import GapState, StreamKey
from fastfeed.journal import RecordKind
from fastfeed.store import SnapshotRow, Store
from fastfeed.venues.binance import BinanceAdapter

FIXTURES = Path(__file__).parent / "fixtures" / "binance"
NKN = StreamKey("depth", "NKNUSDT")


def nkn_depth() -> list[bytes]:
    lines = (FIXTURES / "spot_recorded.ws").read_bytes().splitlines()
    frames = [ln.split(b": ", 1)[1] for ln in lines if ln and not ln.startswith(b"wss://")]
    return [f for f in frames if f.startswith(b'{"stream":"nknusdt@depth@100ms"')]


def snapshot_record(last_update_id: int, status: int = 200) -> bytes:
    body = orjson.dumps({"lastUpdateId": last_update_id, "bids": [["1", "2"]], "asks": []})
    url = f"http://127.0.0.1:1/api/v3/depth?symbol=NKNUSDT&limit=1000&n={last_update_id}"
    return encode_rest(RestHead(url, status, "depth", "NKNUSDT"), body)


def test_rest_record_round_trip_keeps_the_exact_body() -> None:
    head = RestHead("https://api.binance.com/api/v3/depth?symbol=X&limit=5", 429, "depth", "X")
    body = b'{"code":-1003,\n"msg":"Too many requests."}'
    assert decode_rest(encode_rest(head, body)) == (head, body)
    assert decode_rest(b"no head") == "expected a JSON head line then the body"
    assert decode_rest(b'{"url":1}\n') == "expected url, status, channel and symbol in the head"


def test_a_dropped_push_is_a_gap_of_exactly_its_ids_and_the_snapshot_makes_it_lost() -> None:
    frames = nkn_depth()
    dropped = [orjson.loads(f)["data"] for f in frames[3:5]]
    pipeline = Pipeline("binance", BinanceAdapter())
    lsn = 0
    for i, frame in enumerate(frames[:10]):
        if i in (3, 4):
            continue
        lsn += 1
        pipeline.feed(lsn, RecordKind.INBOUND, lsn * 10, frame)
    assert pipeline.resync == {NKN}
    after = orjson.loads(frames[9])["data"]["u"]
    lsn += 1
    pipeline.feed(lsn, RecordKind.REST, lsn * 10, snapshot_record(after))
    lsn += 1
    pipeline.feed(lsn, RecordKind.REST, lsn * 10, snapshot_record(after, status=429))
    batch = pipeline.cut()
    assert batch is not None
    assert [m.seq for m in batch.messages] == [
        orjson.loads(f)["data"]["u"] for i, f in enumerate(frames[:10]) if i not in (3, 4)
    ]
    [gap] = batch.gaps
    assert (gap.key, gap.from_seq, gap.to_seq, gap.state) == (
        NKN,
        dropped[0]["U"],
        dropped[1]["u"],
        GapState.LOST,
    )
    [snap] = batch.snapshots
    assert snap == SnapshotRow(
        "binance",
        "depth",
        "NKNUSDT",
        after,
        90,
        9,
        f"http://127.0.0.1:1/api/v3/depth?symbol=NKNUSDT&limit=1000&n={after}",
        orjson.dumps({"lastUpdateId": after, "bids": [["1", "2"]], "asks": []}),
    )
    assert batch.books == []  # diff-depth pushes are not books
    assert pipeline.snapshots == 1 and pipeline.malformed == 0


def test_gap_marker_makes_an_unrecoverable_gap_lost(tmp_path: Path) -> None:
    agg = b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":%d,'
    agg += b'"p":"1","q":"1","f":1,"l":1,"T":1,"m":true,"M":true}}'
    pipeline = Pipeline("binance", BinanceAdapter())
    for lsn, a in enumerate((10, 11, 15), 1):
        pipeline.feed(lsn, RecordKind.INBOUND, lsn, agg % a)
    marker = {"event": "lost", "channel": "aggTrade", "symbol": "BTCUSDT", "upto": 15}
    pipeline.feed(4, RecordKind.GAP, 4, orjson.dumps(marker | {"reason": "no replay"}))
    batch = pipeline.cut()
    assert batch is not None
    [gap] = batch.gaps
    assert (gap.from_seq, gap.to_seq, gap.state, gap.reason) == (12, 14, GapState.LOST, "no replay")
    store = Store.open(tmp_path / "fastfeed.db", venue="binance")
    try:
        store.apply(batch)
        assert [g["state"] for g in store.gaps()] == ["lost"]
        assert list(store.iter_snapshots()) == []
    finally:
        store.close()
