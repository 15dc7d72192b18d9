"""The SQLite store: exact round trips, exactly-once apply, format version, readers never block."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fastfeed.cli import main
from fastfeed.datadir import JOURNAL_DIR, STORE_FILE
from fastfeed.derive.rows import Batch, BookRow, MessageRow, StreamCheckpoint
from fastfeed.derive.streams import Gap, GapState, StreamKey
from fastfeed.errors import StoreError
from fastfeed.journal import FsyncMode, Journal
from fastfeed.store import _INSERT_MESSAGES, STORE_FORMAT_VERSION, Store
from fastfeed.tools.export import export_lines
from tests.recording import SEGMENT_BYTES, build, catch_up

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
    assert _INSERT_MESSAGES.count("?") <= 999


@pytest.mark.parametrize("count", [0, 99, 100, 101, 250])
def test_every_row_lands_once_across_insert_chunk_boundaries(store: Store, count: int) -> None:
    rows = [msg(seq, seq) for seq in range(1, count + 1)]
    # A replay that overlaps both sides of a chunk boundary lands nothing twice.
    again = rows[95:105]
    store.apply(batch(count, rows))
    store.apply(batch(count, again))
    assert list(store.iter_messages()) == rows


def test_a_stream_gets_its_id_with_its_first_messages_and_keeps_it(
    store: Store, tmp_path: Path
) -> None:
    # MSFT is known by its totals first (no message yet), AAPL by its first message; a status
    # lists a stream once its totals are in, as before stream ids.
    msft = StreamCheckpoint("sim", "depth", "MSFT.US", None, 5, 0, 0, None)
    store.apply(batch(1, [msg(1, 1)], streams=[msft]))
    assert [s["symbol"] for s in store.status()["streams"]] == ["MSFT.US"]
    store.apply(batch(3, [msg(1, 2, "MSFT.US"), msg(2, 3)]))
    db = sqlite3.connect(tmp_path / "fastfeed.db")
    ids = dict(db.execute("SELECT symbol, id FROM streams").fetchall())
    stored = db.execute("SELECT stream, seq FROM messages ORDER BY lsn").fetchall()
    db.close()
    assert stored == [(ids["AAPL.US"], 1), (ids["MSFT.US"], 1), (ids["AAPL.US"], 2)]
    assert list(store.iter_messages()) == [msg(1, 1), msg(2, 3), msg(1, 2, "MSFT.US")]


def test_a_failed_batch_takes_the_stream_ids_it_assigned_with_it(store: Store) -> None:
    unencodable = BookRow("sim", "depth", "NEW.US", 1, 1, 1, [{1}], [])  # a set: not JSON
    with pytest.raises(TypeError):
        store.apply(batch(1, [msg(1, 1, "NEW.US")], books=[unencodable]))
    store.apply(batch(2, [msg(1, 1, "NEW.US"), msg(2, 2, "NEW.US")]))
    assert [m.seq for m in store.iter_messages(symbol="NEW.US")] == [1, 2]


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


# A format-3 file as that fastfeed left it: the names in every messages row (no stream ids).
FORMAT_3 = """
PRAGMA journal_mode=WAL;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('format_version', '3'), ('venue', 'tickdb');
CREATE TABLE messages (
    venue TEXT NOT NULL, channel TEXT NOT NULL, symbol TEXT NOT NULL,
    epoch INTEGER NOT NULL, seq INTEGER, recv_ns INTEGER NOT NULL, lsn INTEGER PRIMARY KEY,
    frame BLOB NOT NULL, binary INTEGER NOT NULL
);
INSERT INTO messages VALUES ('tickdb', 'depth', 'AAPL.US', 0, 1, 1, 1, x'7b7d', 0);
"""


def test_a_format_3_file_is_refused_untouched_and_rebuilt_from_the_journal_once_moved_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = build(tmp_path / "data", {("depth", "AAPL.US"): 30, ("trade", "BTC.CC"): 20})
    assert main(["status", "--data-dir", str(data), "--format", "json"]) == 0
    want = capsys.readouterr().out
    db = data / STORE_FILE
    db.unlink()
    conn = sqlite3.connect(db)
    conn.executescript(FORMAT_3)
    conn.close()
    before = db.read_bytes()
    for readonly in (True, False):
        with pytest.raises(StoreError, match="format version 3; this fastfeed reads 4") as err:
            Store.open(db, readonly=readonly)
        assert "move it aside" in (err.value.hint or "")
    assert main(["status", "--data-dir", str(data)]) != 0
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and "format version 3" in out.err, out.err
    assert db.read_bytes() == before  # not even the new schema's tables were added to it
    db.rename(data / "fastfeed.db.format-3")
    with Journal.open(
        data / JOURNAL_DIR, segment_bytes=SEGMENT_BYTES, fsync=FsyncMode.NONE
    ) as journal:
        catch_up(data, journal)
    assert main(["status", "--data-dir", str(data), "--format", "json"]) == 0
    assert capsys.readouterr().out == want
