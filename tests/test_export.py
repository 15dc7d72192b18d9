"""``fastfeed export``: jsonl as before, CSV, Parquet, time windows and flattened depth levels."""

from __future__ import annotations

import csv
import sys
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from fastfeed.cli import main
from fastfeed.sim.content import StreamGenerator
from tests.recording import T0_NS, build, recv_ns

DEPTH = ("depth", "AAPL.US")
TRADE = ("trade", "BTC.CC")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # LSNs alternate depth/trade: depth seq n is LSN 2n-1, trade seq n is LSN 2n.
    return build(tmp_path_factory.mktemp("rec") / "data", {DEPTH: 40, TRADE: 40})


def frames(key: tuple[str, str], n: int) -> list[bytes]:
    gen = StreamGenerator(1, *key)
    return [gen.next() for _ in range(n)]


def run(data: Path, out: Path, *flags: str) -> int:
    return main(["export", "--data-dir", str(data), "--output", str(out), *flags])


def test_default_jsonl_is_the_documented_contract(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    assert run(data, out) == 0
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [(r["channel"], r["seq"]) for r in rows] == [("depth", n) for n in range(1, 41)] + [
        ("trade", n) for n in range(1, 41)
    ]
    assert rows[0] == {
        "venue": "tickdb",
        "channel": "depth",
        "symbol": "AAPL.US",
        "seq": 1,
        "recv_ns": recv_ns(1),
        "frame": frames(DEPTH, 1)[0].decode(),
        "kind": "message",
        "epoch": 0,
    }
    # The documented fields first, in their order; epoch (venue restarts) is appended.
    assert list(rows[0])[:6] == ["venue", "channel", "symbol", "seq", "recv_ns", "frame"]
    assert [r["frame"].encode() for r in rows[40:]] == frames(TRADE, 40)


def test_csv_frames_round_trip_exactly(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "trade.csv"
    assert run(data, out, "--format", "csv", "--channel", "trade") == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "venue",
        "channel",
        "symbol",
        "seq",
        "recv_ns",
        "frame",
        "frame_b64",
        "epoch",
    ]
    assert [r["frame"].encode() for r in rows] == frames(TRADE, 40)
    assert [int(r["recv_ns"]) for r in rows] == [recv_ns(2 * n) for n in range(1, 41)]
    assert {r["frame_b64"] for r in rows} == {""}


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (str(recv_ns(11)), str(recv_ns(21))),  # epoch ns
        ("2024-11-24T00:00:00.011Z", "2024-11-24T00:00:00.021"),  # ISO-8601, UTC either way
    ],
)
def test_time_window_is_from_inclusive_to_exclusive(
    data: Path, tmp_path: Path, start: str, end: str
) -> None:
    out = tmp_path / "window.jsonl"
    assert run(data, out, "--from", start, "--to", end) == 0
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    # LSNs 11..20: depth seqs 6..10 (odd LSNs), trade seqs 6..10 (even LSNs)
    assert [(r["channel"], r["seq"]) for r in rows] == [("depth", n) for n in range(6, 11)] + [
        ("trade", n) for n in range(6, 11)
    ]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--from", "yesterday"), "--from 'yesterday': expected ISO-8601"),
        (("--from", str(T0_NS), "--to", str(T0_NS)), "--to"),
        (("--depth-levels", "--channel", "trade"), "--depth-levels"),
    ],
)
def test_bad_flags_are_one_line(
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    words: str,
) -> None:
    assert run(data, tmp_path / "x", *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastfeed: ") and words in err, err


def test_depth_levels_flatten_every_book_level(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "levels.jsonl"
    assert run(data, out, "--depth-levels") == 0
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    want = []
    for seq, frame in enumerate(frames(DEPTH, 40), start=1):
        book = orjson.loads(frame)["data"]
        for side, key in (("bid", "bids"), ("ask", "asks")):
            for level, (price, size) in enumerate(book[key], start=1):
                want.append(
                    {
                        "venue": "tickdb",
                        "channel": "depth",
                        "symbol": "AAPL.US",
                        "seq": seq,
                        "recv_ns": recv_ns(2 * seq - 1),
                        "ts_ms": book["timestamp"],
                        "side": side,
                        "level": level,
                        "price": price,
                        "size": size,
                        "epoch": 0,
                    }
                )
    assert rows == want
    assert len(rows) == 40 * 10


def test_depth_levels_csv_has_decimal_strings(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "levels.csv"
    assert run(data, out, "--depth-levels", "--format", "csv", "--to", str(recv_ns(2))) == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    book = orjson.loads(frames(DEPTH, 1)[0])["data"]
    assert [(r["side"], r["level"], r["price"], r["size"]) for r in rows] == [
        ("bid", str(i), p, s) for i, (p, s) in enumerate(book["bids"], start=1)
    ] + [("ask", str(i), p, s) for i, (p, s) in enumerate(book["asks"], start=1)]


def test_parquet_frames_and_levels(data: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "frames.parquet"
    assert run(data, out, "--format", "parquet", "--channel", "depth") == 0
    table = pq.read_table(out)
    assert table.column("frame").to_pylist() == frames(DEPTH, 40)
    assert table.column("seq").to_pylist() == list(range(1, 41))
    assert set(table.column("binary").to_pylist()) == {False}

    out = tmp_path / "levels.parquet"
    assert run(data, out, "--format", "parquet", "--depth-levels") == 0
    levels = pq.read_table(out)
    assert str(levels.schema.field("price").type) == "decimal128(38, 18)"
    first = orjson.loads(frames(DEPTH, 1)[0])["data"]
    assert levels.column("price").to_pylist()[:5] == [Decimal(p) for p, _ in first["bids"]]
    assert levels.column("size").to_pylist()[5:10] == [Decimal(s) for _, s in first["asks"]]
    assert levels.num_rows == 400


def test_parquet_without_pyarrow_says_how_to_install(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    assert run(data, tmp_path / "x.parquet", "--format", "parquet") == 2
    err = capsys.readouterr().err
    assert err == "fastfeed: parquet export needs pyarrow: pip install 'fastfeed[parquet]'\n"
    assert not (tmp_path / "x.parquet").exists()
