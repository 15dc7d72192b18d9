"""The SQLite store: exact round trips, exactly-once apply, format version, readers never block."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fastfeed import defaults
from fastfeed.derive.rows import Batch, BookRow, MessageRow, StreamCheckpoint
from fastfeed.derive.streams import Gap, GapState, StreamKey
from fastfeed.errors import StoreError
from fastfeed.store import STORE_FORMAT_VERSION, Store
from fastfeed.tools.export import export_lines

AAPL = StreamKey("depth", "AAPL.US")


def msg(seq: int | None, lsn: int, symbol: str = "AAPL.US", epoch: int = 0) -> MessageRow:
    frame = b'{"seq":%d}' % lsn
    return MessageRow("sim", "depth", symbol, epoch, seq, 1000 + lsn, lsn, frame, False)


def batch(lsn: int, messages: list[MessageRow], **kw: object) -> Batch:
    fields: dict[str, object] = dict(
        applied_lsn=lsn,
        messages=messages,
        books=[],
        gaps=[],
        streams=[],
        tracker_state=None,
        subscriptions=None,
        counters=None,
    )
    fields.update(kw)
    return Batch(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "fastfeed.db", venue="sim")
    yield s
    s.close()


def test_messages_round_trip_in_stream_then_seq_order(store: Store) -> None:
    rows = [msg(2, 1), msg(1, 2), msg(None, 3, "ZZZ.US"), msg(None, 4, "ZZZ.US"), msg(3, 5)]
    store.apply(batch(5, rows))
    assert list(store.iter_messages()) == [rows[1], rows[0], rows[4], rows[2], rows[3]]
    assert [m.lsn for m in store.iter_messages(symbol="ZZZ.US")] == [3, 4]
    assert list(store.iter_messages(channel="trade")) == []
    assert store.applied_lsn() == 5


def test_the_same_seq_applied_twice_is_stored_once(store: Store) -> None:
    store.apply(batch(2, [msg(1, 1), msg(2, 2)]))
    store.apply(batch(3, [msg(2, 2), msg(3, 3)]))  # a replayed range overlaps the last batch
    assert [m.seq for m in store.iter_messages()] == [1, 2, 3]


def test_a_venue_restarts_overlapping_seqs_are_kept_and_exported_epoch_by_epoch(
    store: Store,
) -> None:
    # Epoch 0 reached seq 3; the venue restarted (epoch 1) and sent 1 and 2 again, then the
    # recorder replayed the whole range once more: every message once, none lost to the overlap.
    old = [msg(1, 1), msg(2, 2), msg(3, 3)]
    new = [msg(1, 4, epoch=1), msg(2, 5, epoch=1)]
    store.apply(batch(4, [*old, new[0]]))
    store.apply(batch(5, [*old, *new]))
    assert list(store.iter_messages()) == [*old, *new]
    lines = [orjson.loads(line) for line in export_lines(store.iter_messages())]
    assert [(r["epoch"], r["seq"], r["frame"]) for r in lines] == [
        (m.epoch, m.seq, m.frame.decode()) for m in [*old, *new]
    ]


def test_a_multi_row_insert_stays_within_sqlites_parameter_limit() -> None:
    # SQLITE_MAX_VARIABLE_NUMBER defaults to 999 in SQLite before 3.32 (sqlite.org/limits.html).
    assert defaults.SQLITE_ROWS_PER_INSERT * len(MessageRow._fields) <= 999


@pytest.mark.parametrize("count", [0, 99, 100, 101, 250])
def test_every_row_lands_once_across_insert_chunk_boundaries(store: Store, count: int) -> None:
    rows = [msg(seq, seq) for seq in range(1, count + 1)]
    # A replay that overlaps both sides of a chunk boundary lands nothing twice.
    again = rows[95:105]
    store.apply(batch(count, rows))
    store.apply(batch(count, again))
    assert list(store.iter_messages()) == rows


def test_applied_lsn_never_goes_backwards(store: Store) -> None:
    store.apply(batch(10, []))
    with pytest.raises(StoreError, match="behind applied 10"):
        store.apply(batch(9, []))


def test_gaps_are_upserted_by_id_and_status_counts_them(store: Store) -> None:
    gap = Gap(7, AAPL, 11, 14, 5, None, GapState.OPEN, "seq jump")
    stream = StreamCheckpoint("sim", "depth", "AAPL.US", 20, 999, 16, 2, 1)
    store.apply(batch(1, [], gaps=[gap], streams=[stream]))
    assert store.status()["gaps_open"] == 1
    assert store.status()["streams"][0]["gaps_open"] == 1
    filled = Gap(7, AAPL, 11, 14, 5, 9, GapState.FILLED, "seq jump")
    store.apply(batch(2, [], gaps=[filled]))
    assert store.gaps() == [
        {
            "venue": "sim",
            "channel": "depth",
            "symbol": "AAPL.US",
            "epoch": 0,
            "from_seq": 11,
            "to_seq": 14,
            "from_ns": 5,
            "to_ns": 9,
            "state": "filled",
            "reason": "seq jump",
        }
    ]
    assert store.status() == {
        "streams": [
            {
                "venue": "sim",
                "channel": "depth",
                "symbol": "AAPL.US",
                "records": 16,
                "epoch": 0,
                "first_seq": 1,
                "last_seq": 20,
                "last_recv_ns": 999,
                "duplicates": 2,
                "gaps_open": 0,
            }
        ],
        "gaps_open": 0,
        "gaps_filled": 1,
        "gaps_lost": 0,
        "applied_lsn": 2,
        "counters": {},
    }


def test_checkpoint_state_round_trips(store: Store) -> None:
    store.apply(
        batch(
            3,
            [],
            tracker_state={"v": 1, "streams": []},
            subscriptions={"depth": ["AAPL.US"]},
            counters={"malformed": 2},
        )
    )
    assert store.load_tracker_state() == {"v": 1, "streams": []}
    assert store.load_subscriptions() == {"depth": ["AAPL.US"]}
    assert store.counters() == {"malformed": 2}
    assert store.venue() == "sim"


def test_latest_book(store: Store) -> None:
    old = BookRow("sim", "depth", "AAPL.US", 1, 10, 1, [["1.00", "5"]], [["1.01", "6"]])
    new = BookRow("sim", "depth", "AAPL.US", 2, 20, 2, [["1.01", "5"]], [["1.02", "6"]])
    store.apply(batch(2, [], books=[old, new]))
    assert store.latest_book("depth", "AAPL.US") == new
    assert store.latest_book("depth", "MSFT.US") is None


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path / "fastfeed.db").close()
    conn = sqlite3.connect(tmp_path / "fastfeed.db")
    conn.execute("UPDATE meta SET value='99' WHERE key='format_version'")
    conn.commit()
    conn.close()
    with pytest.raises(
        StoreError, match=f"format version 99; this fastfeed reads {STORE_FORMAT_VERSION}"
    ):
        Store.open(tmp_path / "fastfeed.db")


def test_db_file_is_private(tmp_path: Path) -> None:
    Store.open(tmp_path / "fastfeed.db").close()
    assert stat.S_IMODE((tmp_path / "fastfeed.db").stat().st_mode) == 0o600


READER = """
import sqlite3, sys
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, isolation_level=None)
conn.execute("BEGIN")
print(conn.execute("SELECT count(*) FROM messages").fetchone()[0], flush=True)
sys.stdin.readline()  # hold the read transaction until told to stop
print(conn.execute("SELECT count(*) FROM messages").fetchone()[0], flush=True)
"""


def test_a_long_read_transaction_in_another_process_does_not_block_apply(
    store: Store, tmp_path: Path
) -> None:
    store.apply(batch(1, [msg(1, 1)]))
    with subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path / "fastfeed.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as reader:
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline().strip() == "1"  # the reader's snapshot is open
        for lsn in range(2, 52):
            store.apply(batch(lsn, [msg(lsn, lsn)]))  # would raise "database is locked"
        assert store.applied_lsn() == 51
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "1"  # its snapshot stayed consistent
        reader.stdin.close()
        assert reader.wait(timeout=30) == 0


def test_a_damaged_file_says_it_can_be_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "fastfeed.db"
    path.write_bytes(b"\x00not sqlite\xff" * 1000)
    with pytest.raises(StoreError, match="not a database") as info:
        Store.open(path)
    assert (
        info.value.hint
        == "move fastfeed.db aside: it is rebuilt from the journal at the next start"
    )
