"""The SQLite store: messages, book snapshots, checkpoints and the gap ledger, from the journal.

Everything here can be rebuilt from the journal, which is why ``synchronous=NORMAL`` is enough:
a power cut may lose the last SQLite transactions, and the next start replays them from the
journal (each batch records the journal LSN it reached in the same transaction).

A seq names a message only within its stream's epoch (a venue restart numbers the stream from 1
again: fastfeed/derive/sequence.py), so messages are unique by (stream, epoch, seq). A message row
carries its stream's id (``streams.id``) rather than its venue, channel and symbol: an integer
key keeps the unique index small, which is most of what an insert costs with many streams.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import sqlite3
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from fastfeed import defaults
from fastfeed.derive.rows import Batch, BookRow, MessageRow, SnapshotRow, StreamCheckpoint
from fastfeed.derive.streams import Gap
from fastfeed.errors import StoreError

__all__ = [
    "STORE_FORMAT_VERSION",
    "Batch",
    "BookRow",
    "MessageRow",
    "SnapshotRow",
    "Store",
    "StreamCheckpoint",
]

# The SQLite schema's version; 2: the epoch column (messages, books, streams, gaps); 3: lsn is
# the messages table's rowid; 4: messages name their stream by its id in ``streams``.
STORE_FORMAT_VERSION = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- One row per stream: its id (what messages carry), its names, and the tracker's totals, which
-- are NULL from the id's first message until the first checkpoint that reports them.
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    venue TEXT NOT NULL, channel TEXT NOT NULL, symbol TEXT NOT NULL,
    records INTEGER, duplicates INTEGER, epoch INTEGER,
    first_seq INTEGER, last_seq INTEGER, last_recv_ns INTEGER,
    UNIQUE (venue, channel, symbol)
);
CREATE TABLE IF NOT EXISTS messages (
    stream INTEGER NOT NULL REFERENCES streams (id),
    epoch INTEGER NOT NULL, seq INTEGER, recv_ns INTEGER NOT NULL,
    -- The rowid: rows go in in LSN order, appended to the table's B-tree, and no separate
    -- index on lsn is kept up to date (one B-tree fewer per row than a unique index).
    lsn INTEGER PRIMARY KEY,
    frame BLOB NOT NULL, binary INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_seq
    ON messages (stream, epoch, seq) WHERE seq IS NOT NULL;
-- Messages with their stream's names, as MessageRow holds them (also the one to query by hand).
CREATE VIEW IF NOT EXISTS named_messages AS
    SELECT s.venue, s.channel, s.symbol, m.epoch, m.seq, m.recv_ns, m.lsn, m.frame, m.binary
    FROM messages m JOIN streams s ON s.id = m.stream;
CREATE TABLE IF NOT EXISTS books (
    venue TEXT NOT NULL, channel TEXT NOT NULL, symbol TEXT NOT NULL,
    epoch INTEGER NOT NULL, seq INTEGER, recv_ns INTEGER NOT NULL, ts_ms INTEGER,
    bids TEXT NOT NULL, asks TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS books_by_stream ON books (venue, channel, symbol, recv_ns);
CREATE TABLE IF NOT EXISTS gaps (
    gap_id INTEGER NOT NULL, venue TEXT NOT NULL, channel TEXT NOT NULL, symbol TEXT NOT NULL,
    epoch INTEGER NOT NULL, from_seq INTEGER, to_seq INTEGER,
    from_ns INTEGER NOT NULL, to_ns INTEGER,
    state TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (venue, gap_id)
);
CREATE TABLE IF NOT EXISTS checkpoint (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    venue TEXT NOT NULL, channel TEXT NOT NULL, symbol TEXT NOT NULL,
    seq INTEGER NOT NULL, recv_ns INTEGER NOT NULL, lsn INTEGER NOT NULL,
    url TEXT NOT NULL, body BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS snapshots_by_lsn ON snapshots (lsn);
"""


# MessageRow's fields are the messages table's columns in order, but for its first three (venue,
# channel, symbol), which the table holds as one stream id.
_ROW_FIELDS = len(MessageRow._fields)
_COLUMNS = _ROW_FIELDS - 2
_MESSAGE_VALUES = "(" + ",".join("?" * _COLUMNS) + ")"
_ROWS_PER_INSERT = defaults.SQLITE_ROWS_PER_INSERT  # read once: the statement and its chunks
# OR IGNORE on the unique indexes: a range applied twice lands once (exactly-once).
_INSERT_MESSAGE = f"INSERT OR IGNORE INTO messages VALUES {_MESSAGE_VALUES}"
_INSERT_MESSAGES = "INSERT OR IGNORE INTO messages VALUES " + ",".join(
    [_MESSAGE_VALUES] * _ROWS_PER_INSERT
)
# The messages of a stream named by channel ?1 and symbol ?2: found by messages_by_seq through its
# id, where a join through named_messages scans that index whole.
_OF_STREAM = "stream IN (SELECT id FROM streams WHERE channel=?1 AND symbol=?2)"
_STREAM_STATS = (
    "INSERT INTO streams (venue, channel, symbol, records, duplicates, epoch, first_seq, last_seq,"
    " last_recv_ns) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (venue, channel, symbol) DO UPDATE SET"
    " records=excluded.records, duplicates=excluded.duplicates, epoch=excluded.epoch,"
    " first_seq=excluded.first_seq, last_seq=excluded.last_seq, last_recv_ns=excluded.last_recv_ns"
)


def _names(params: list[Any]) -> Iterator[tuple[str, str, str]]:
    """Each row's (venue, channel, symbol) in MessageRows' fields laid end to end."""
    w = _ROW_FIELDS
    return zip(params[0::w], params[1::w], params[2::w], strict=True)


def _insert_messages(c: sqlite3.Connection, params: list[Any]) -> None:
    """Insert message rows in order, ``SQLITE_ROWS_PER_INSERT`` to a statement, the rest singly.

    ``params``: the rows' column values end to end, ``_COLUMNS`` a row.
    """
    step = _ROWS_PER_INSERT * _COLUMNS
    whole = len(params) - len(params) % step
    c.executemany(_INSERT_MESSAGES, (params[i : i + step] for i in range(0, whole, step)))
    c.executemany(
        _INSERT_MESSAGE, (params[i : i + _COLUMNS] for i in range(whole, len(params), _COLUMNS))
    )


class Store:
    """One connection to ``fastfeed.db``: the snapshotter's writer or a read-only viewer."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        venue: str | None,
        immutable: os.stat_result | None = None,
    ) -> None:
        self._conn = conn
        self._path = path
        self._venue = venue
        self._immutable = immutable  # opened immutable=1: the file as it was then
        self._aborted = False
        # The writer's (venue, channel, symbol) -> streams.id, read at its first apply.
        self._ids: dict[tuple[str, str, str], int] | None = None
        # sqlite3's interrupt() misses executemany (no statement runs between its rows), so
        # aborting goes through the progress handler, which SQLite calls inside each step.
        conn.set_progress_handler(lambda: self._aborted, defaults.SQLITE_ABORT_CHECK_OPCODES)

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, venue: str | None = None) -> Store:
        """Open (creating the schema unless ``readonly``) and check the format version.

        ``readonly`` writes nothing, not even SQLite's side files (see ``_readonly_uri``), and
        takes no lock a writer waits for.

        Raises:
            StoreError: unreadable file, or a format version other than ours.
        """
        immutable = None
        try:
            if readonly:
                uri, immutable = _readonly_uri(path)
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                fresh = not path.exists()
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                if fresh:
                    os.chmod(path, 0o600)
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL: a power cut may drop the last transactions; the journal replays them.
                conn.execute("PRAGMA synchronous=NORMAL")
                # Inserts into messages_by_seq land all over it with many streams: keep it in
                # memory rather than re-reading pages (the default cache is 2 MiB).
                conn.execute(f"PRAGMA cache_size=-{defaults.SQLITE_CACHE_KIB}")
                # A file of another format is refused below as it is: the schema's statements
                # would write into it (or fail on its tables) first.
                if _stamped(conn) in (None, str(STORE_FORMAT_VERSION)):
                    conn.executescript(_SCHEMA)
                    conn.execute(
                        "INSERT OR IGNORE INTO meta VALUES ('format_version', ?)",
                        (str(STORE_FORMAT_VERSION),),
                    )
                    if venue is not None:
                        conn.execute("INSERT OR IGNORE INTO meta VALUES ('venue', ?)", (venue,))
            row = conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            # Damage or a non-database file: SQLite holds only what the journal derives, so
            # moving it aside loses nothing. (OperationalError, its subclass, is not damage.)
            hint = None
            if not isinstance(exc, sqlite3.OperationalError):
                hint = f"move {path.name} aside: it is rebuilt from the journal at the next start"
            raise StoreError(f"cannot open {path}: {exc}", hint=hint) from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        if row is None or row[0] != str(STORE_FORMAT_VERSION):
            conn.close()
            raise StoreError(
                f"{path} has format version {row[0] if row else 'none'}; this fastfeed reads"
                f" {STORE_FORMAT_VERSION}",
                hint="use the fastfeed version that wrote it, or move it aside to rebuild it"
                " from the journal (what retention deleted from the journal stays only in the"
                " file moved aside)",
            )
        return cls(conn, path, venue, immutable)

    def changed(self) -> bool:
        """Whether a file opened ``immutable`` was written since (a recorder checkpointed into
        it): what was read from it may then be inconsistent."""
        if self._immutable is None:
            return False
        try:
            now = os.stat(self._path)
        except FileNotFoundError:
            return True
        then = self._immutable
        return (now.st_ino, now.st_size, now.st_mtime_ns) != (
            then.st_ino,
            then.st_size,
            then.st_mtime_ns,
        )

    @classmethod
    def empty(cls) -> Store:
        """An empty store in memory: what a data dir without a SQLite file yet holds."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.executescript(_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(STORE_FORMAT_VERSION),))
        return cls(conn, Path(":memory:"), None)

    def begin_read(self) -> None:
        """Start one read transaction: every later query sees the same committed state, even
        while a recorder commits, until ``close``."""
        self._conn.execute("BEGIN")
        self._conn.execute("SELECT count(*) FROM meta").fetchone()  # BEGIN alone reads nothing

    # -- the writer ----------------------------------------------------------------------------
    def applied_lsn(self) -> int:
        """The journal LSN the last committed batch reached (0 when empty)."""
        row = self._conn.execute("SELECT value FROM checkpoint WHERE key='applied_lsn'").fetchone()
        return int(row[0]) if row else 0

    def apply(self, batch: Batch) -> None:
        """Commit one batch in one transaction, with its applied LSN.

        Raises:
            StoreError: the batch would move applied_lsn backwards, or SQLite failed (disk full).
        """
        c = self._conn
        try:
            current = self.applied_lsn()
            if batch.applied_lsn < current:
                raise StoreError(f"batch reaches LSN {batch.applied_lsn}, behind applied {current}")
            c.execute("BEGIN IMMEDIATE")
            _insert_messages(c, self._message_params(batch.messages))
            c.executemany(
                "INSERT INTO books VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        b.venue,
                        b.channel,
                        b.symbol,
                        b.epoch,
                        b.seq,
                        b.recv_ns,
                        b.ts_ms,
                        orjson.dumps(b.bids).decode(),
                        orjson.dumps(b.asks).decode(),
                    )
                    for b in batch.books
                ],
            )
            c.executemany(
                "INSERT OR IGNORE INTO snapshots VALUES (?,?,?,?,?,?,?,?)", batch.snapshots
            )
            venue = batch.messages[0].venue if batch.messages else (self._venue or "")
            c.executemany(
                "INSERT OR REPLACE INTO gaps VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(g.gap_id, *_gap_row(self._venue or venue, g)) for g in batch.gaps],
            )
            c.executemany(
                _STREAM_STATS,
                [
                    (
                        s.venue,
                        s.channel,
                        s.symbol,
                        s.records,
                        s.duplicates,
                        s.epoch,
                        s.first_seq,
                        s.last_seq,
                        s.last_recv_ns,
                    )
                    for s in batch.streams
                ],
            )
            state: list[tuple[str, Any]] = [("applied_lsn", batch.applied_lsn)]
            if batch.tracker_state is not None:
                state.append(("tracker", orjson.dumps(batch.tracker_state)))
            if batch.subscriptions is not None:
                state.append(("subscriptions", orjson.dumps(batch.subscriptions)))
            if batch.counters is not None:
                state.append(("counters", orjson.dumps(batch.counters)))
            c.executemany("INSERT OR REPLACE INTO checkpoint VALUES (?, ?)", state)
            c.execute("COMMIT")
        except BaseException as exc:
            self._ids = None  # ids this batch assigned are rolled back with it: read them again
            # SQLite may have rolled back already (a full disk fails the COMMIT itself).
            if c.in_transaction:
                # An aborted connection refuses the ROLLBACK too; closing it rolls back.
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"cannot commit a snapshot to {self._path}: {exc}",
                    hint="free disk space; the journal still holds everything and SQLite"
                    " catches up at the next start",
                ) from None
            raise

    def _message_params(self, rows: list[MessageRow]) -> list[Any]:
        """The rows' column values end to end, each row's names replaced by its stream id.

        Slices over one flat list rather than a new tuple per row: measured over 20,000 rows of
        1 to 1,000 streams, about 60 ns a row more than binding the rows as they are (most of
        it hashing the names), where a tuple per row costs about 200 ns more again.
        """
        params = list(chain.from_iterable(rows))
        ids = self._stream_ids()
        try:
            # map, not a comprehension: zip reuses its tuple once the lookup has released it.
            stream_ids = list(map(ids.__getitem__, _names(params)))
        except KeyError:
            for name in dict.fromkeys(_names(params)):
                if name not in ids:
                    ids[name] = self._new_stream(name)
            stream_ids = list(map(ids.__getitem__, _names(params)))
        params[0::_ROW_FIELDS] = stream_ids
        del params[1::_ROW_FIELDS]  # channel; then symbol, now one place to the left
        del params[1 :: _ROW_FIELDS - 1]
        return params

    def _stream_ids(self) -> dict[tuple[str, str, str], int]:
        """The ids of the streams the file holds, read once per writer (and after a rollback)."""
        if self._ids is None:
            self._ids = {
                (venue, channel, symbol): stream_id
                for stream_id, venue, channel, symbol in self._conn.execute(
                    "SELECT id, venue, channel, symbol FROM streams"
                )
            }
        return self._ids

    def _new_stream(self, name: tuple[str, str, str]) -> int:
        """A stream's id, assigned in the transaction of its first message (a stream known so
        far by its totals alone has one already)."""
        c = self._conn
        c.execute("INSERT OR IGNORE INTO streams (venue, channel, symbol) VALUES (?,?,?)", name)
        (stream_id,) = c.execute(
            "SELECT id FROM streams WHERE venue=? AND channel=? AND symbol=?", name
        ).fetchone()
        return int(stream_id)

    def in_transaction(self) -> bool:
        """Whether a commit is in flight on this connection (safe to ask from any thread)."""
        return self._conn.in_transaction

    def abort(self) -> None:
        """From any thread: every statement from now on fails, so an ``apply`` in flight
        raises ``StoreError`` and its transaction is rolled back (on close at the latest)."""
        self._aborted = True

    def _checkpoint_doc(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM checkpoint WHERE key=?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def load_tracker_state(self) -> dict[str, Any] | None:
        """The sequence tracker's state as of ``applied_lsn``."""
        doc = self._checkpoint_doc("tracker")
        return doc if isinstance(doc, dict) else None

    def load_subscriptions(self) -> dict[str, list[str]]:
        """The subscription set last journaled (channel -> symbols)."""
        doc = self._checkpoint_doc("subscriptions")
        return doc if isinstance(doc, dict) else {}

    def counters(self) -> dict[str, int]:
        """Recorder counters as of ``applied_lsn`` (malformed, rejected, reconnects)."""
        doc = self._checkpoint_doc("counters")
        return doc if isinstance(doc, dict) else {}

    def venue(self) -> str | None:
        """The venue this data dir records (set when the writer first opened it)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key='venue'").fetchone()
        return str(row[0]) if row else None

    # -- readers -------------------------------------------------------------------------------
    # ``pending``: a batch derived from the journal past ``applied_lsn`` but not committed (the
    # read-only commands derive it in memory); each reader answers as if it were applied.
    def status(self, pending: Batch | None = None) -> dict[str, Any]:
        """Per-stream totals, sequence range and open gaps, JSON-ready."""
        gaps = self.gaps(pending)
        open_by_stream: dict[tuple[str, str, str], int] = {}
        states: dict[str, int] = {}
        for g in gaps:
            states[g["state"]] = states.get(g["state"], 0) + 1
            if g["state"] == "open":
                key = (g["venue"], g["channel"], g["symbol"])
                open_by_stream[key] = open_by_stream.get(key, 0) + 1
        rows = {
            (v, ch, sym): (rec, dup, epoch, first, last, last_ns)
            for v, ch, sym, rec, dup, epoch, first, last, last_ns in self._conn.execute(
                "SELECT venue, channel, symbol, records, duplicates, epoch, first_seq, last_seq,"
                " last_recv_ns FROM streams WHERE records IS NOT NULL"
            )
        }
        for s in pending.streams if pending is not None else ():
            rows[(s.venue, s.channel, s.symbol)] = (
                s.records,
                s.duplicates,
                s.epoch,
                s.first_seq,
                s.last_seq,
                s.last_recv_ns,
            )
        streams = [
            {
                "venue": v,
                "channel": ch,
                "symbol": sym,
                "records": rec,
                "epoch": epoch,
                "first_seq": first,
                "last_seq": last,
                "last_recv_ns": last_ns,
                "duplicates": dup,
                "gaps_open": open_by_stream.get((v, ch, sym), 0),
            }
            for (v, ch, sym), (rec, dup, epoch, first, last, last_ns) in sorted(rows.items())
        ]
        counters = self.counters()
        if pending is not None and pending.counters is not None:
            counters = pending.counters
        return {
            "streams": streams,
            "gaps_open": states.get("open", 0),
            "gaps_filled": states.get("filled", 0),
            "gaps_lost": states.get("lost", 0),
            "applied_lsn": self.applied_lsn(),
            "counters": counters,
        }

    _GAP_COLUMNS = (
        "venue",
        "channel",
        "symbol",
        "epoch",
        "from_seq",
        "to_seq",
        "from_ns",
        "to_ns",
        "state",
        "reason",
    )

    def gaps(self, pending: Batch | None = None) -> list[dict[str, Any]]:
        """The gap ledger, by stream then position."""
        cols = self._GAP_COLUMNS
        ledger = {
            (row[0], row[1]): dict(zip(cols, row[2:], strict=True))
            for row in self._conn.execute(f"SELECT venue, gap_id, {', '.join(cols)} FROM gaps")
        }
        gaps = pending.gaps if pending is not None else []
        venue = self._venue_of(pending) if pending is not None else ""
        for g in gaps:
            ledger[(venue, g.gap_id)] = dict(zip(cols, _gap_row(venue, g), strict=True))
        return sorted(ledger.values(), key=_gap_order)

    def _venue_of(self, pending: Batch) -> str:
        """The venue ``apply`` would label ``pending``'s gaps with."""
        return (
            self._venue or self.venue() or (pending.messages[0].venue if pending.messages else "")
        )

    def iter_messages(
        self,
        *,
        channel: str | None = None,
        symbol: str | None = None,
        pending: Batch | None = None,
    ) -> Iterator[MessageRow]:
        """Messages by stream, epoch, then seq (LSN when there is no seq), from a cursor."""
        cursor = self._conn.execute(
            "SELECT venue, channel, symbol, epoch, seq, recv_ns, lsn, frame, binary"
            " FROM named_messages"
            " WHERE (?1 IS NULL OR channel = ?1) AND (?2 IS NULL OR symbol = ?2)"
            " ORDER BY venue, channel, symbol, epoch, seq IS NULL, seq, lsn",
            (channel, symbol),
        )
        stored = (
            MessageRow(v, ch, sym, epoch, seq, recv_ns, lsn, bytes(frame), bool(binary))
            for v, ch, sym, epoch, seq, recv_ns, lsn, frame, binary in cursor
        )
        if pending is None or not pending.messages:
            yield from stored
            return
        extra = sorted(
            (
                m
                for m in pending.messages
                if (channel is None or m.channel == channel)
                and (symbol is None or m.symbol == symbol)
            ),
            key=_message_order,
        )
        yield from heapq.merge(stored, extra, key=_message_order)

    def iter_snapshots(
        self,
        *,
        channel: str | None = None,
        symbol: str | None = None,
        pending: Batch | None = None,
    ) -> Iterator[SnapshotRow]:
        """REST snapshots by stream then seq (a data dir from before the table has none),
        with ``pending``'s (derived from the journal past SQLite) merged in."""
        try:
            cursor: Iterator[Any] = self._conn.execute(
                "SELECT venue, channel, symbol, seq, recv_ns, lsn, url, body FROM snapshots"
                " WHERE (?1 IS NULL OR channel = ?1) AND (?2 IS NULL OR symbol = ?2)"
                " ORDER BY venue, channel, symbol, seq, lsn",
                (channel, symbol),
            )
        except sqlite3.OperationalError:
            cursor = iter(())  # opened read-only before any writer added the table
        stored = (
            SnapshotRow(v, ch, sym, seq, recv_ns, lsn, url, bytes(body))
            for v, ch, sym, seq, recv_ns, lsn, url, body in cursor
        )
        extra = sorted(
            (
                r
                for r in (pending.snapshots if pending is not None else ())
                if (channel is None or r.channel == channel)
                and (symbol is None or r.symbol == symbol)
            ),
            key=_snapshot_order,
        )
        yield from heapq.merge(stored, extra, key=_snapshot_order)

    def latest_book(self, channel: str, symbol: str) -> BookRow | None:
        """The most recent book snapshot of one stream."""
        row = self._conn.execute(
            "SELECT venue, channel, symbol, epoch, seq, recv_ns, ts_ms, bids, asks FROM books"
            " WHERE channel=? AND symbol=? ORDER BY recv_ns DESC LIMIT 1",
            (channel, symbol),
        ).fetchone()
        if row is None:
            return None
        v, ch, sym, epoch, seq, recv_ns, ts_ms, bids, asks = row
        bids, asks = orjson.loads(bids), orjson.loads(asks)
        return BookRow(v, ch, sym, seq, recv_ns, ts_ms, bids, asks, epoch)

    # -- what verify and replay ask ------------------------------------------------------------
    def messages_by_lsn(self, from_lsn: int) -> Iterator[MessageRow]:
        """Every stored message from ``from_lsn`` on, in LSN order."""
        for v, ch, sym, epoch, seq, recv_ns, lsn, frame, binary in self._conn.execute(
            "SELECT venue, channel, symbol, epoch, seq, recv_ns, lsn, frame, binary"
            " FROM named_messages"
            " WHERE lsn >= ? ORDER BY lsn",
            (from_lsn,),
        ):
            yield MessageRow(v, ch, sym, epoch, seq, recv_ns, lsn, bytes(frame), bool(binary))

    def messages_before(self, lsn: int) -> int:
        """How many stored messages have an LSN below ``lsn``."""
        (n,) = self._conn.execute("SELECT count(*) FROM messages WHERE lsn < ?", (lsn,)).fetchone()
        return int(n)

    def stored_earlier(self, channel: str, symbol: str, seq: int, lsn: int) -> bool:
        """Whether this stream's seq is stored from an earlier LSN (so a copy at ``lsn`` was a
        duplicate).

        The copy belongs to the epoch of the stream's last row stored before it: an epoch begins
        with a stored message, and a duplicate repeats a seq of the epoch it arrives in.
        """
        found = self._conn.execute(
            f"SELECT 1 FROM messages WHERE {_OF_STREAM} AND seq=?3 AND lsn<?4"
            f" AND epoch=(SELECT epoch FROM messages WHERE {_OF_STREAM} AND lsn<?4"
            " ORDER BY lsn DESC LIMIT 1)",
            (channel, symbol, seq, lsn),
        ).fetchone()
        return found is not None

    def epoch_counts(self) -> dict[tuple[str, str, int], tuple[int, int | None]]:
        """(channel, symbol, epoch) -> (stored messages, highest seq)."""
        return {
            (ch, sym, epoch): (n, top)
            for ch, sym, epoch, n, top in self._conn.execute(
                "SELECT channel, symbol, epoch, count(*), max(seq) FROM named_messages"
                " GROUP BY channel, symbol, epoch"
            )
        }

    def seqs(self, channel: str, symbol: str, epoch: int) -> Iterator[int]:
        """The stored seqs of one epoch of a stream, ascending, from a cursor."""
        for (seq,) in self._conn.execute(
            f"SELECT seq FROM messages WHERE {_OF_STREAM} AND epoch=?3 AND seq IS NOT NULL"
            " ORDER BY seq",
            (channel, symbol, epoch),
        ):
            yield seq

    def first_recv_ns(self) -> int:
        """The receive time of the first sequenced message (0: none)."""
        (first,) = self._conn.execute(
            "SELECT min(recv_ns) FROM messages WHERE seq IS NOT NULL"
        ).fetchone()
        return int(first or 0)

    def latest_epoch(self, channel: str, symbol: str) -> tuple[int, int, int, float]:
        """The stream's latest epoch with its first and last seq and mean frame size (zeros:
        no sequenced message)."""
        (epoch,) = self._conn.execute(
            f"SELECT max(epoch) FROM messages WHERE {_OF_STREAM} AND seq IS NOT NULL",
            (channel, symbol),
        ).fetchone()
        first, last, mean = self._conn.execute(
            "SELECT min(seq), max(seq), avg(length(frame)) FROM messages"
            f" WHERE {_OF_STREAM} AND epoch=?3 AND seq IS NOT NULL",
            (channel, symbol, epoch or 0),
        ).fetchone()
        return epoch or 0, first or 0, last or 0, float(mean or 0.0)

    def frames(self, channel: str, symbol: str, epoch: int, lo: int, hi: int) -> list[bytes]:
        """The stored frames of seqs ``lo..hi`` of one epoch of a stream, in seq order."""
        rows = self._conn.execute(
            f"SELECT frame FROM messages WHERE {_OF_STREAM} AND epoch=?3"
            " AND seq BETWEEN ?4 AND ?5 ORDER BY seq",
            (channel, symbol, epoch, lo, hi),
        )
        return [bytes(frame) for (frame,) in rows]

    def seq_times(
        self, channel: str, symbol: str, epoch: int, after: int, limit: int
    ) -> list[tuple[int, int]]:
        """Up to ``limit`` (seq, recv_ns) of one epoch of a stream after seq ``after``."""
        return self._conn.execute(
            f"SELECT seq, recv_ns FROM messages WHERE {_OF_STREAM} AND epoch=?3"
            " AND seq > ?4 ORDER BY seq LIMIT ?5",
            (channel, symbol, epoch, after, limit),
        ).fetchall()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def _message_order(m: MessageRow) -> tuple[Any, ...]:
    """``iter_messages``' SQL order: stream, epoch, sequenced first by seq, then LSN."""
    return (m.venue, m.channel, m.symbol, m.epoch, m.seq is None, m.seq or 0, m.lsn)


def _gap_order(g: dict[str, Any]) -> tuple[Any, ...]:
    """``gaps``' order: stream, epoch, position (SQLite sorts NULL first)."""
    return (
        g["venue"],
        g["channel"],
        g["symbol"],
        g["epoch"],
        g["from_seq"] is not None,
        g["from_seq"] or 0,
        g["from_ns"],
    )


def _stamped(conn: sqlite3.Connection) -> str | None:
    """The format version a file is stamped with (None: a new file, not stamped yet)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
        row = conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
        return str(row[0]) if row else None
    return None


def _readonly_uri(path: Path) -> tuple[str, os.stat_result | None]:
    """The URI that reads ``path`` without writing a byte in the data dir, and for an
    ``immutable`` open the file's stat then (``Store.changed`` compares it).

    SQLite's plain ``mode=ro`` still creates the -wal and -shm files of a WAL database and
    writes its read marks into -shm. So: beside a -wal holding transactions (a recorder running,
    or killed), ``readonly_shm=1`` maps -shm read-only (SQLite falls back to reading the WAL into
    heap memory when it cannot use -shm as it is); without one the database file is complete
    and ``immutable=1`` reads it with no lock and no side file. A writer that starts meanwhile
    writes its -wal, and the file itself only at a checkpoint, which ``changed`` reports.

    Raises:
        StoreError: a -wal holding transactions without its -shm (a partial copy).
    """
    uri = f"file:{quote(str(path))}"
    wal = path.with_name(path.name + "-wal")
    try:
        wal_bytes = wal.stat().st_size
    except FileNotFoundError:
        wal_bytes = 0
    if wal_bytes:
        if not path.with_name(path.name + "-shm").exists():
            raise StoreError(
                f"{wal} holds SQLite transactions but {path.name}-shm is missing",
                hint="copy the data dir again with every file, or start a recorder on it once",
            )
        return f"{uri}?mode=ro&readonly_shm=1", None
    try:
        return f"{uri}?immutable=1", os.stat(path)
    except FileNotFoundError:
        raise StoreError(f"no SQLite file at {path}") from None


def _gap_row(venue: str, g: Gap) -> tuple[Any, ...]:
    """A gap as the ``gaps`` table's columns after ``gap_id`` (venue ... reason)."""
    return (
        venue,
        g.key.channel,
        g.key.symbol,
        g.epoch,
        g.from_seq,
        g.to_seq,
        g.from_ns,
        g.to_ns,
        g.state.value,
        g.reason,
    )


def _snapshot_order(row: SnapshotRow) -> tuple[str, str, str, int, int]:
    return (row.venue, row.channel, row.symbol, row.seq, row.lsn)
