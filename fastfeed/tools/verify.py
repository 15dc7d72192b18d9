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

Read-only and lock-free: SQLite is opened read-only inside one read transaction (a consistent
snapshot even while a recorder writes) and the journal through read-only mappings, so it runs on
a copy or beside a running recorder. It checks what SQLite holds; journal records past its
applied LSN are noted, not derived (``status`` and ``export`` derive them in memory).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fastfeed.datadir import JOURNAL_DIR, STORE_FILE, open_data_dir
from fastfeed.errors import FastfeedError
from fastfeed.journal import FLAG_SHADOW, Break, RecordKind, read_journal, scan_journal
from fastfeed.store import Store
from fastfeed.tools.progress import Progress
from fastfeed.venues import VENUES, adapter_for
from fastfeed.venues.base import VenueAdapter
from fastfeed.venues.events import Message
from fastfeed.venues.instream import InStreamVenue, Step

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
    db_path = data_dir / STORE_FILE
    store = Store.open(db_path, readonly=True)
    try:
        store.begin_read()  # one snapshot for every query below, even beside a recorder
        report.applied_lsn = store.applied_lsn()
        # Journal after SQLite: the recorder only commits LSNs already in the journal, so the
        # journal read now reaches at least the applied LSN read above.
        _check_journal(data_dir / JOURNAL_DIR, report)
        _check_against_journal(store, data_dir / JOURNAL_DIR, store.venue(), report)
        _check_streams(store, _adapter(store.venue()), report)
        oversized = store.counters().get("oversized", 0)
        if oversized:
            report.notes.append(
                f"{oversized} frame{'s' if oversized > 1 else ''} over the size limit skipped"
                " (the seq each held, when known, is a lost gap in the ledger)"
            )
        if store.changed():
            report.problems.append(
                f"{db_path} was written while verify read it (a recorder started?): run it again"
            )
    except sqlite3.Error as exc:
        raise FastfeedError(f"cannot read {db_path}: {exc}") from None
    finally:
        store.close()
    return report


# -- 1. the journal itself ---------------------------------------------------------------------
def _check_journal(journal_dir: Path, report: Report) -> None:
    if not journal_dir.is_dir():
        report.problems.append(f"no journal directory at {journal_dir}")
        return
    scan = scan_journal(journal_dir)
    report.segments = scan.segments
    report.first_lsn = scan.first_lsn
    report.last_lsn = scan.last_lsn
    for damage in scan.damage:
        # A bad record at the very end is what a crash mid-write leaves: recovery trims it.
        (report.notes if damage.kind is Break.TORN_TAIL else report.problems).append(str(damage))


# -- 2. SQLite against the journal -------------------------------------------------------------
def _check_against_journal(
    store: Store, journal_dir: Path, venue: str | None, report: Report
) -> None:
    applied, first = report.applied_lsn, report.first_lsn
    if applied > report.last_lsn:
        report.problems.append(
            f"SQLite has applied LSN {applied} but the journal's valid records end at LSN"
            f" {report.last_lsn}"
        )
    if first == 0:
        return
    older = store.messages_before(first)
    if older:
        report.notes.append(
            f"{older} messages predate the journal's retained start (LSN {first}) and were not"
            " compared with it"
        )
    if applied < report.last_lsn:
        report.notes.append(
            f"journal LSNs {applied + 1}..{report.last_lsn} are not in SQLite yet (a running"
            " recorder snapshots them, otherwise its next start; `status` and `export` include"
            " them)"
        )
    adapter = _adapter(venue)
    rows = store.messages_by_lsn(first)
    row = next(rows, None)
    progress = Progress("verifying SQLite against the journal", max(applied - first + 1, 0))
    try:
        reached = first - 1
        for rec in read_journal(journal_dir, first, applied):
            reached = rec.lsn
            progress.update(rec.lsn - first)
            while row is not None and row.lsn < rec.lsn:
                report.problems.append(f"messages row at LSN {row.lsn}: no such journal record")
                row = next(rows, None)
            here = row if row is not None and row.lsn == rec.lsn else None
            if here is not None:
                row = next(rows, None)
            if rec.kind == RecordKind.OUTBOUND and isinstance(adapter, InStreamVenue):
                adapter.sent(rec.payload)  # what was asked decides how some pushes read
            event = (
                adapter.parse(rec.payload, rec.recv_ns, binary=rec.binary)
                if rec.kind == RecordKind.INBOUND and not rec.flags & FLAG_SHADOW
                else None
            )
            if type(event) is not Message or not _stored_as_message(adapter, event):
                if here is not None:
                    report.problems.append(
                        f"messages row at LSN {rec.lsn} ({here.channel}:{here.symbol} seq"
                        f" {here.seq}): the journal record there is not a data message"
                    )
                continue
            name = f"LSN {rec.lsn} ({event.channel}:{event.symbol} seq {event.seq})"
            if here is None:
                if event.seq is not None and store.stored_earlier(
                    event.channel, event.symbol, event.seq, rec.lsn
                ):
                    report.duplicates += 1
                else:
                    report.problems.append(f"{name}: in the journal but not in SQLite messages")
                continue
            got: tuple[object, ...] = (here.venue, here.channel, here.symbol, here.seq)
            got += (here.recv_ns, here.frame, here.binary)
            want: tuple[object, ...] = (venue or here.venue, event.channel, event.symbol)
            want += (event.seq, rec.recv_ns, rec.payload, rec.binary)
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
            where = "past applied LSN" if row.lsn > applied else "without a journal record"
            report.problems.append(
                f"messages row at LSN {row.lsn} ({row.channel}:{row.symbol} seq {row.seq}) is"
                f" {where}"
            )
            row = next(rows, None)
    finally:
        progress.close()


# -- 3 and 4. streams, seq holes and the gap ledger ----------------------------------------------
def _adapter(venue: str | None) -> VenueAdapter:
    """The adapter that reads this data dir's frames (tickdb for an unlabelled one)."""
    return adapter_for(venue if venue in VENUES else "tickdb")


def _check_streams(store: Store, adapter: VenueAdapter, report: Report) -> None:
    ledger: dict[tuple[str, str, int], list[tuple[int, int, str]]] = {}
    for g in store.gaps():
        if g["from_seq"] is not None:
            epoch_of = (g["channel"], g["symbol"], g["epoch"])
            ledger.setdefault(epoch_of, []).append((g["from_seq"], g["to_seq"], g["state"]))
    table: dict[tuple[str, str], tuple[int, int, int | None]] = {
        (s["channel"], s["symbol"]): (s["records"], s["epoch"], s["last_seq"])
        for s in store.status()["streams"]
    }
    tops = store.epoch_counts()
    counted: dict[tuple[str, str], int] = {}
    for (ch, sym, _), (n, _) in tops.items():
        counted[(ch, sym)] = counted.get((ch, sym), 0) + n
    report.streams = len(counted)
    for key in sorted(set(table) | set(counted)):
        records, epoch, last = table.get(key, (0, 0, None))
        held = (counted.get(key, 0), tops.get((key[0], key[1], epoch), (0, None))[1])
        if (records, last) != held:
            report.problems.append(
                f"{key[0]}:{key[1]}: streams table says (records, last_seq of epoch {epoch}) ="
                f" {(records, last)}, messages hold {held}"
            )
    for at in sorted(set(tops) | set(ledger)):
        name = f"{at[0]}:{at[1]} epoch {at[2]}"
        if adapter.replays:
            holes = list(_holes(store.seqs(*at)))
        elif isinstance(adapter, InStreamVenue) and adapter.numbers_connections:
            holes = []  # seqs count the connection's messages: a stream's own skip others'
        else:
            holes = list(_range_holes(store, adapter, *at))
        report.holes += len(holes)
        gaps = ledger.get(at, [])
        expected = sorted((lo, hi) for lo, hi, state in gaps if state in ("open", "lost"))
        for lo, hi in holes:
            if not _covered(expected, lo, hi):
                report.problems.append(f"{name}: seqs {lo}..{hi} missing and not in the gap ledger")
        for lo, hi, state in gaps:
            if state == "filled" and any(a <= hi and lo <= b for a, b in holes):
                report.problems.append(f"{name}: gap {lo}..{hi} is marked filled but has holes")


def _holes(seqs: Iterator[int]) -> Iterator[tuple[int, int]]:
    """Missing seq ranges between the first and last of ascending ``seqs``, streamed."""
    prev = None
    for seq in seqs:
        if prev is not None and seq > prev + 1:
            yield prev + 1, seq - 1
        prev = seq


def _stored_as_message(adapter: VenueAdapter, event: Message) -> bool:
    """Whether the pipeline keeps a parsed push as a messages row: a venue's in-feed snapshot
    is a snapshots row (but where seqs number connections: no id of a stream to collide
    with), an idle keepalive no row at all."""
    if event.seq is None or not isinstance(adapter, InStreamVenue):
        return True
    if adapter.numbers_connections:
        return True
    return adapter.step(event) not in (Step.SNAPSHOT, Step.KEEPALIVE)


def _range_holes(
    store: Store, adapter: VenueAdapter, channel: str, symbol: str, epoch: int
) -> Iterator[tuple[int, int]]:
    """Missing ids of a stream whose pushes cover ranges (Binance ``U..u``): each stored
    message is parsed again for the first id it covers; streamed in seq order. Ids at or
    below a snapshot of the stream in the hole are settled by it (a venue that sends its
    snapshot in the feed restarts the chain there)."""
    snapshots = sorted(s.seq for s in store.iter_snapshots(channel=channel, symbol=symbol))
    prev = None
    for row in store.iter_messages(channel=channel, symbol=symbol):
        if row.epoch != epoch:
            continue
        event = adapter.parse(row.frame, row.recv_ns, binary=row.binary)
        if type(event) is not Message or event.seq is None:
            continue
        first = event.seq if event.first_seq is None else event.first_seq
        if prev is not None and first > prev + 1:
            lo = max([prev + 1, *(s + 1 for s in snapshots if prev < s < first)])
            if lo < first:
                yield lo, first - 1
        prev = event.seq if prev is None else max(prev, event.seq)


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
