"""``fastfeed verify``: check a data dir end to end without changing it.

Four checks, each naming what is wrong and where:

1. journal: every segment's header and every record's CRC, segment indexes without holes, and
   LSNs +1 from record to record and across segments (a bad record at the very end of the last
   segment is a torn tail, what a crash leaves and recovery trims: a note, not a failure);
2. SQLite against the journal, over the LSNs both hold (the journal's retained start up to
   ``applied_lsn``): every data message the journal holds is in ``messages`` with the same
   bytes, time and stream, or is a duplicate of a seq stored at an earlier LSN in the same epoch;
   every row there is such a message; no row claims an LSN past ``applied_lsn``;
3. per stream and epoch (a venue restart numbers a stream from 1 again), every missing seq
   between the first and last stored is covered by an open or lost gap of that epoch in the
   ledger, and no filled gap has a missing seq;
4. the ``streams`` table agrees with ``messages`` (record count, last seq of its epoch).

Read-only and lock-free: SQLite is opened ``mode=ro`` inside one read transaction (a consistent
snapshot even while a recorder writes) and the journal through read-only mappings, so it runs on
a copy or beside a running recorder. It never catches SQLite up (``status`` and ``export`` do).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastfeed.datadir import open_data_dir
from fastfeed.derive.pipeline import FLAG_BINARY
from fastfeed.errors import FastfeedError
from fastfeed.journal import RecordKind, read_journal
from fastfeed.journal._wal import HEADER_BYTES, Segment
from fastfeed.journal.segments import list_segments
from fastfeed.store import Store
from fastfeed.tools.progress import Progress
from fastfeed.venues.events import Message
from fastfeed.venues.tickdb import TickDBAdapter

__all__ = ["Report", "main", "verify"]

MAX_SHOWN = 50  # problems printed in full; the rest are counted (the first ones locate it)


@dataclass(slots=True)
class Report:
    """What verify found: problems (exit non-zero), notes (fine, but worth saying) and counts."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    segments: int = 0
    first_lsn: int = 0  # first LSN the journal still holds (0: empty)
    last_lsn: int = 0
    applied_lsn: int = 0
    checked: int = 0  # SQLite rows matched against the journal
    duplicates: int = 0
    streams: int = 0
    holes: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is inconsistent."""
        return not self.problems

    def summary(self) -> str:
        """The text ``fastfeed verify`` prints."""
        lines = [
            f"journal: {self.segments} segments, LSN {self.first_lsn}..{self.last_lsn}",
            f"sqlite: applied LSN {self.applied_lsn}; {self.checked} messages matched the"
            f" journal, {self.duplicates} journaled duplicates stored once",
            f"streams: {self.streams}, {self.holes} seq holes, each in the gap ledger"
            if self.ok
            else f"streams: {self.streams}, {self.holes} seq holes",
        ]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"PROBLEM: {p}" for p in self.problems[:MAX_SHOWN]]
        if len(self.problems) > MAX_SHOWN:
            lines.append(f"PROBLEM: ... and {len(self.problems) - MAX_SHOWN} more")
        lines.append("OK" if self.ok else f"FAILED: {len(self.problems)} problems")
        return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    """``fastfeed verify``: print the summary; 0 when consistent, 1 otherwise."""
    report = verify(open_data_dir(args.data_dir))
    sys.stdout.write(report.summary())
    sys.stdout.flush()
    return 0 if report.ok else 1


def verify(data_dir: Path) -> Report:
    """Run every check on ``data_dir`` (read-only) and return what it found."""
    report = Report()
    db_path = data_dir / "fastfeed.db"
    Store.open(db_path, readonly=True).close()  # the format version check, with its hint
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        conn.execute("BEGIN")  # one snapshot for every query below, even beside a recorder
        report.applied_lsn = _scalar(conn, "SELECT value FROM checkpoint WHERE key='applied_lsn'")
        venue = conn.execute("SELECT value FROM meta WHERE key='venue'").fetchone()
        # Journal after SQLite: the recorder only commits LSNs already in the journal, so the
        # journal read now reaches at least the applied LSN read above.
        _check_journal(data_dir / "journal", report)
        _check_against_journal(conn, data_dir / "journal", venue[0] if venue else None, report)
        _check_streams(conn, report)
    except sqlite3.Error as exc:
        raise FastfeedError(f"cannot read {db_path}: {exc}") from None
    finally:
        conn.close()
    return report


def _scalar(conn: sqlite3.Connection, sql: str, *params: object) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


# -- 1. the journal itself ---------------------------------------------------------------------
def _check_journal(journal_dir: Path, report: Report) -> None:
    if not journal_dir.is_dir():
        report.problems.append(f"no journal directory at {journal_dir}")
        return
    listed = list_segments(journal_dir)
    report.segments = len(listed)
    progress = Progress("verifying journal segments", len(listed))
    prev = 0  # last valid LSN so far
    try:
        for k, (index, path) in enumerate(listed):
            progress.update(k)
            if k and index != listed[k - 1][0] + 1:
                report.problems.append(f"journal segment {listed[k - 1][0] + 1} is missing")
            try:
                seg = Segment(str(path))
            except FileNotFoundError:
                continue  # retention removed it while we listed (a recorder is running)
            except FastfeedError as exc:
                report.problems.append(f"{path}: {exc}")
                continue
            try:
                prev = _check_segment(seg, prev, last=k == len(listed) - 1, report=report)
            finally:
                seg.close()
    finally:
        progress.close()
    report.last_lsn = prev


def _check_segment(seg: Segment, prev: int, *, last: bool, report: Report) -> int:
    """Scan one segment's records; returns the last valid LSN (for continuity into the next)."""
    offset = HEADER_BYTES
    first = seg.first_lsn()
    if first and prev and first != prev + 1:
        report.problems.append(
            f"{seg.path}: starts at LSN {first}, but the previous segment ended at LSN {prev}"
        )
        prev = 0  # judge the records inside this segment on their own
    if first and not report.first_lsn:
        report.first_lsn = first
    while True:
        offset, prev, _, bad = seg.scan(offset, prev)
        if not bad:
            return prev
        found = seg.find_valid(offset, 0)
        if found < 0:
            if last:
                report.notes.append(
                    f"{seg.path}: torn tail at offset {offset} after LSN {prev} (a crash mid-write;"
                    " recovery trims it)"
                )
            else:
                report.problems.append(
                    f"{seg.path}: damaged at offset {offset} after LSN {prev}; nothing valid"
                    " follows in this segment"
                )
            return prev
        intact = seg.record(offset, 0)  # checks length and CRC but not the LSN sequence
        if intact is not None:
            report.problems.append(
                f"{seg.path}: LSN jumps from {prev} to {intact[0]} at offset {offset}"
            )
        else:
            report.problems.append(
                f"{seg.path}: record after LSN {prev} at offset {offset} fails its CRC or length"
                f" check; valid records resume at offset {found}"
            )
        offset, prev = found, 0


# -- 2. SQLite against the journal -------------------------------------------------------------
def _rows_by_lsn(conn: sqlite3.Connection, lo: int) -> Iterator[tuple[Any, ...]]:
    yield from conn.execute(
        "SELECT lsn, venue, channel, symbol, seq, recv_ns, frame, binary FROM messages"
        " WHERE lsn >= ? ORDER BY lsn",
        (lo,),
    )


def _check_against_journal(
    conn: sqlite3.Connection, journal_dir: Path, venue: str | None, report: Report
) -> None:
    applied, first = report.applied_lsn, report.first_lsn
    if applied > report.last_lsn:
        report.problems.append(
            f"SQLite has applied LSN {applied} but the journal's valid records end at LSN"
            f" {report.last_lsn}"
        )
    if first == 0:
        return
    older = _scalar(conn, "SELECT count(*) FROM messages WHERE lsn < ?", first)
    if older:
        report.notes.append(
            f"{older} messages predate the journal's retained start (LSN {first}) and were not"
            " compared with it"
        )
    if applied < report.last_lsn:
        report.notes.append(
            f"journal LSNs {applied + 1}..{report.last_lsn} are not in SQLite yet (a running"
            " recorder snapshots them; otherwise the next start or `status` catches them up)"
        )
    adapter = TickDBAdapter()
    rows = _rows_by_lsn(conn, first)
    row = next(rows, None)
    progress = Progress("verifying SQLite against the journal", max(applied - first + 1, 0))
    try:
        reached = first - 1
        for rec in read_journal(journal_dir, first, applied):
            reached = rec.lsn
            progress.update(rec.lsn - first)
            while row is not None and row[0] < rec.lsn:
                report.problems.append(f"messages row at LSN {row[0]}: no such journal record")
                row = next(rows, None)
            here = row if row is not None and row[0] == rec.lsn else None
            if here is not None:
                row = next(rows, None)
            binary = bool(rec.flags & FLAG_BINARY)
            event = (
                adapter.parse(rec.payload, rec.recv_ns, binary=binary)
                if rec.kind == RecordKind.INBOUND
                else None
            )
            if type(event) is not Message:
                if here is not None:
                    report.problems.append(
                        f"messages row at LSN {rec.lsn} ({here[2]}:{here[3]} seq {here[4]}):"
                        " the journal record there is not a data message"
                    )
                continue
            name = f"LSN {rec.lsn} ({event.channel}:{event.symbol} seq {event.seq})"
            if here is None:
                if event.seq is not None and _stored_earlier(conn, event, rec.lsn):
                    report.duplicates += 1
                else:
                    report.problems.append(f"{name}: in the journal but not in SQLite messages")
                continue
            want = (venue, event.channel, event.symbol, event.seq, rec.recv_ns, rec.payload, binary)
            got = (here[1], here[2], here[3], here[4], here[5], bytes(here[6]), bool(here[7]))
            if venue is None:
                want = (got[0], *want[1:])
            if got != want:
                fields = ("venue", "channel", "symbol", "seq", "recv_ns", "frame", "binary")
                differ = [f for f, a, b in zip(fields, got, want, strict=True) if a != b]
                report.problems.append(f"{name}: SQLite row differs from the journal in {differ}")
            else:
                report.checked += 1
        if reached < applied and first <= applied:
            report.problems.append(
                f"journal records {reached + 1}..{applied} (applied to SQLite) could not be read"
            )
        while row is not None:
            where = "past applied LSN" if row[0] > applied else "without a journal record"
            report.problems.append(
                f"messages row at LSN {row[0]} ({row[2]}:{row[3]} seq {row[4]}) is {where}"
            )
            row = next(rows, None)
    finally:
        progress.close()


def _stored_earlier(conn: sqlite3.Connection, event: Message, lsn: int) -> bool:
    """Whether this stream's seq is stored from an earlier LSN (so this copy was a duplicate).

    The copy belongs to the epoch of the stream's last row stored before it: an epoch begins
    with a stored message, and a duplicate repeats a seq of the epoch it arrives in.
    """
    found = conn.execute(
        "SELECT 1 FROM messages WHERE channel=?1 AND symbol=?2 AND seq=?3 AND lsn<?4"
        " AND epoch=(SELECT epoch FROM messages WHERE channel=?1 AND symbol=?2 AND lsn<?4"
        " ORDER BY lsn DESC LIMIT 1)",
        (event.channel, event.symbol, event.seq, lsn),
    ).fetchone()
    return found is not None


# -- 3 and 4. streams, seq holes and the gap ledger ----------------------------------------------
def _check_streams(conn: sqlite3.Connection, report: Report) -> None:
    ledger: dict[tuple[str, str, int], list[tuple[int, int, str]]] = {}
    for channel, symbol, epoch, lo, hi, state in conn.execute(
        "SELECT channel, symbol, epoch, from_seq, to_seq, state FROM gaps"
        " WHERE from_seq IS NOT NULL"
    ):
        ledger.setdefault((channel, symbol, epoch), []).append((lo, hi, state))
    table = {
        (ch, sym): (records, epoch, last)
        for ch, sym, records, epoch, last in conn.execute(
            "SELECT channel, symbol, records, epoch, last_seq FROM streams"
        )
    }
    tops = {
        (ch, sym, epoch): (n, top)
        for ch, sym, epoch, n, top in conn.execute(
            "SELECT channel, symbol, epoch, count(*), max(seq) FROM messages"
            " GROUP BY channel, symbol, epoch"
        )
    }
    counted: dict[tuple[str, str], int] = {}
    for (ch, sym, _), (n, _) in tops.items():
        counted[(ch, sym)] = counted.get((ch, sym), 0) + n
    report.streams = len(counted)
    for key in sorted(set(table) | set(counted)):
        records, epoch, last = table.get(key, (0, 0, None))
        held = (counted.get(key, 0), tops.get((*key, epoch), (0, None))[1])
        if (records, last) != held:
            report.problems.append(
                f"{key[0]}:{key[1]}: streams table says (records, last_seq of epoch {epoch}) ="
                f" {(records, last)}, messages hold {held}"
            )
    for at in sorted(set(tops) | set(ledger)):
        name = f"{at[0]}:{at[1]} epoch {at[2]}"
        holes = list(_holes(conn, at))
        report.holes += len(holes)
        gaps = ledger.get(at, [])
        expected = sorted((lo, hi) for lo, hi, state in gaps if state in ("open", "lost"))
        for lo, hi in holes:
            if not _covered(expected, lo, hi):
                report.problems.append(f"{name}: seqs {lo}..{hi} missing and not in the gap ledger")
        for lo, hi, state in gaps:
            if state == "filled" and any(a <= hi and lo <= b for a, b in holes):
                report.problems.append(f"{name}: gap {lo}..{hi} is marked filled but has holes")


def _holes(conn: sqlite3.Connection, key: tuple[str, str, int]) -> Iterator[tuple[int, int]]:
    """Missing seq ranges between an epoch's first and last stored seq, streamed in seq order."""
    prev = None
    for (seq,) in conn.execute(
        "SELECT seq FROM messages WHERE channel=? AND symbol=? AND epoch=? AND seq IS NOT NULL"
        " ORDER BY seq",
        key,
    ):
        if prev is not None and seq > prev + 1:
            yield prev + 1, seq - 1
        prev = seq


def _covered(ranges: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """Whether sorted ``ranges`` (possibly overlapping) cover every seq of ``lo..hi``."""
    need = lo
    for a, b in ranges:
        if a > need:
            break
        need = max(need, b + 1)
        if need > hi:
            return True
    return need > hi
