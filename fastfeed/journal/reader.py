"""Reading a journal from any process, without its lock: records, where the log ends, damage.

The readers here map segments read-only and need no lock, because a record's ``length`` is
stored last and its CRC covers everything else: a half-written record never validates, so a
reader beside a running writer sees a prefix of the log, never a torn record. ``Journal.read``
(the writer's own process) goes through the same code.

Three questions, three functions:

* ``read_journal``: the valid records from an LSN on, stopping where the log stops (and, once
  exhausted, the damage it stopped on, if any);
* ``end_of_log``: the last valid LSN and, if the log stops on damage rather than on the clean
  end (zeros), that damage and where valid records resume;
* ``scan_journal``: every segment checked, and every break found in the log (the ``verify``
  walk).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

from fastfeed.errors import FastfeedError
from fastfeed.journal._wal import HEADER_BYTES, Segment
from fastfeed.journal.kinds import FLAG_BINARY
from fastfeed.journal.segments import list_segments, segment_path

__all__ = [
    "Break",
    "Damage",
    "JournalEnd",
    "JournalReader",
    "JournalRecord",
    "JournalScan",
    "durable_mark",
    "end_of_log",
    "read_journal",
    "scan_journal",
]


class JournalRecord(NamedTuple):
    """One record as read back: its LSN, header fields and a copy of the payload.

    ``stream`` is the header's connection slot (the recorder's number for the venue connection
    the frame came in on), not a channel/symbol stream: a frame is journaled before it is parsed.
    A named tuple: readers make one per record, and a tuple costs a quarter of a frozen
    dataclass (0.2 against 0.8 µs), much of the applier's read cost per record.
    """

    lsn: int
    kind: int
    stream: int
    flags: int
    recv_ns: int
    payload: bytes

    @property
    def binary(self) -> bool:
        """Whether the frame was a binary WebSocket frame (flags bit 0)."""
        return bool(self.flags & FLAG_BINARY)


_record = partial(tuple.__new__, JournalRecord)  # a JournalRecord from one tuple, no __new__


class Break(enum.StrEnum):
    """How the log breaks at a ``Damage``."""

    MISSING_SEGMENT = "missing segment"  # a segment index is absent between two others
    UNREADABLE_SEGMENT = "unreadable segment"  # bad header, wrong format version
    LSN_JUMP = "LSN jump"  # an intact record whose LSN is not the previous + 1
    BAD_RECORD = "bad record"  # fails its length or CRC check
    TORN_TAIL = "torn tail"  # a bad record at the very end of the log: a crash mid-write


@dataclass(frozen=True, slots=True)
class Damage:
    """A place where the log breaks: the segment, the byte offset and the last LSN before it.

    ``resumes_at`` is the first LSN readable after it (None: nothing valid follows in that
    segment); ``text`` says all of it in one line, naming the file.
    """

    kind: Break
    segment: str
    offset: int
    after_lsn: int
    resumes_at: int | None
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class JournalEnd:
    """Where reading stops: the last valid LSN and, if not on the clean end, the damage there."""

    last_lsn: int
    damage: Damage | None


@dataclass(slots=True)
class JournalScan:
    """Every segment checked: the LSN range the log holds and every break found in it."""

    segments: int = 0
    first_lsn: int = 0  # 0: empty
    last_lsn: int = 0
    damage: list[Damage] = field(default_factory=list)


def _open_segment(path: Path) -> Segment | None:
    try:
        return Segment(str(path))
    except FileNotFoundError:
        return None  # deleted by retention since it was listed


def _written(seg: Segment) -> bool:
    """Whether a writer has put a record (valid or not) at the start of ``seg``. The scan runs
    only when that first record is not valid, so it stops there too: the cost does not grow
    with the segment's fill."""
    return seg.first_lsn() != 0 or seg.scan(HEADER_BYTES, 0)[3]


_NO_BOUND = 2**64 - 1  # above every LSN
# Records iteration takes at once, then yields one by one: a ``take`` per record would cost
# more than the reading.
_ITER_CHUNK = 256


class JournalReader:
    """The valid records with ``from_lsn <= lsn <= upto_lsn`` (no upper bound if None), in LSN
    order, by iteration or ``take``; resumable: where it stops it keeps its place.

    It stops at the first record after ``from_lsn`` that is missing, invalid or out of
    sequence: for a live journal that is the end written so far, and a later ``take`` or
    iteration continues there with the records written since, without finding its place in
    the segment again (a new reader walks the segment's record headers from its start). Once
    it stops on damage, ``damage`` says where and it stays stopped (None: the end written so
    far, or ``upto_lsn``). Damage wholly before ``from_lsn`` does not stop it (a record already
    applied elsewhere must not hide the ones after it).

    Its place is explicit state: the mapped segment, the offset of the next record there and
    the last LSN before it. It moves to the next segment only once that one holds a record (a
    prepared, empty one is not the log going on), and unmaps the one it leaves. A segment
    retention deletes while mapped here stays readable (the mapping keeps the file).
    """

    def __init__(self, directory: Path, from_lsn: int = 1, upto_lsn: int | None = None) -> None:
        self._dir = Path(directory)
        self._from = from_lsn
        self._upto = _NO_BOUND if upto_lsn is None else upto_lsn
        self.damage: Damage | None = None
        self._seg: Segment | None = None  # None until placed (the log may not exist yet)
        self._offset = HEADER_BYTES
        self._prev = 0  # the LSN before the record at _offset (0: none read yet)
        # The segment after _seg once it exists, with its file's inode: a writer restarted
        # with another segment size replaces a prepared segment under the same name.
        self._next: tuple[int, Segment] | None = None
        self._next_path = (-1, "")  # that segment's index and file name
        self._ahead: list[JournalRecord] = []  # taken for iteration, not yielded yet, last first
        self._closed = False

    def __iter__(self) -> Iterator[JournalRecord]:
        """The records as far as the log goes now (a generator: resuming one costs less than
        calling ``__next__``); iterating again later continues after the last one yielded."""
        ahead = self._ahead
        while True:
            while ahead:
                yield ahead.pop()  # popped only as yielded: an abandoned loop loses nothing
            ahead.extend(reversed(self.take(_ITER_CHUNK)))
            if not ahead:
                return

    def __next__(self) -> JournalRecord:
        """The next record; StopIteration at the end written so far (a later call may not)."""
        for record in self:
            return record
        raise StopIteration

    def take(self, limit: int, upto: int | None = None) -> list[JournalRecord]:
        """Up to ``limit`` of the next records, none past ``upto`` (nor ``upto_lsn``).

        Returns fewer (maybe none) at the end written so far; a later call continues after
        the last record returned, including any record past ``upto`` left for it.
        """
        bound = self._upto if upto is None else min(upto, self._upto)
        out: list[JournalRecord] = []
        ahead = self._ahead
        while ahead and len(out) < limit and ahead[-1].lsn <= bound:
            out.append(ahead.pop())
        if ahead or len(out) >= limit or self.damage is not None or self._closed:
            return out
        seg = self._seg if self._seg is not None else self._place()
        if seg is not None:
            self._read(seg, out, limit, bound)
        return out

    def close(self) -> None:
        """Unmap what the reader holds; it returns no more records."""
        self._closed = True
        self._ahead.clear()
        if self._seg is not None:
            self._seg.close()
            self._seg = None
        self._drop_next()

    def _read(self, seg: Segment, out: list[JournalRecord], limit: int, bound: int) -> None:
        """Append records to ``out`` from the reader's place in ``seg`` until ``limit``,
        ``bound`` or the end of the log; the place moves past each record read."""
        offset, prev, first = self._offset, self._prev, self._from
        record, append, n = seg.record, out.append, len(out)
        try:
            while n < limit:
                rec = record(offset, prev)
                if rec is None:
                    moved = self._end(seg, offset, prev)
                    if moved is None:
                        return
                    if moved[0] is seg:
                        continue  # written here meanwhile: read on in this segment
                    seg, prev = moved
                    offset, record = HEADER_BYTES, seg.record
                    continue
                lsn, kind, stream, flags, recv_ns, payload, after = rec
                if lsn > bound:
                    return  # left in place for a later call with a higher bound
                prev, offset = lsn, after
                if lsn >= first:
                    append(_record((lsn, kind, stream, flags, recv_ns, payload)))
                    n += 1
        finally:
            self._offset, self._prev = offset, prev

    def _place(self) -> Segment | None:
        """Map the segment holding ``from_lsn`` and find its place there (None: no log yet)."""
        directory, from_lsn = self._dir, self._from
        segments = list_segments(directory)
        if not segments:
            return None
        # Skip whole segments: start at the last one whose first record is <= from_lsn.
        at = 0
        for k in range(1, len(segments)):
            probe = _open_segment(segments[k][1])
            if probe is None:
                continue
            first = probe.first_lsn()
            probe.close()
            if first == 0 or first > from_lsn:
                break
            at = k
        seg = _open_segment(segments[at][1])
        if seg is None:
            return None
        offset, prev = seg.seek(from_lsn)
        if from_lsn > 1 and prev != from_lsn - 1 and seg.record(offset, prev) is None:
            # The header walk stopped on damage before from_lsn: find from_lsn past it.
            found = seg.find_valid(offset, from_lsn - 1)
            found_rec = seg.record(found, 0) if found >= 0 else None
            if found_rec is not None and found_rec[0] == from_lsn:
                offset, prev = found, from_lsn - 1
        self._seg, self._offset, self._prev = seg, offset, prev
        return seg

    def _end(self, seg: Segment, offset: int, prev: int) -> tuple[Segment, int] | None:
        """No valid record follows ``prev`` at ``offset``: the segment (and the LSN before its
        first record) the log goes on in, or None (damage, or the end written so far). ``seg``
        itself if a record appeared at ``offset`` meanwhile."""
        if seg.scan(offset, prev)[3]:  # a record is there but fails its checks
            listed = list_segments(self._dir)
            last = not listed or seg.index >= listed[-1][0]
            self.damage = _damage_at(seg, offset, prev, final=last)
            return None
        if prev == 0:
            # Not even a first valid record: the log is empty so far. Only a record after
            # one read here proves a later segment continues this one.
            return None
        moved = self._following(seg.index, prev)
        if moved is None:
            return None
        if seg.record(offset, prev) is not None:
            # The writer filled this segment's last records and rolled over between the miss
            # above and the look at the next segment: read those first (the next one waits).
            if self._next is None or self._next[1] is not moved[0]:
                moved[0].close()  # found past retention, not held: found again when due
            return seg, prev
        self._next = None
        seg.close()
        self._seg = moved[0]
        return moved

    def _following(self, index: int, prev: int) -> tuple[Segment, int] | None:
        """The segment after ``index`` if a record was written there, with the LSN before it."""
        if self._next_path[0] != index + 1:  # a Path costs more than the stat: made once
            self._next_path = (index + 1, str(segment_path(self._dir, index + 1)))
        path = self._next_path[1]
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            self._drop_next()
            return self._past_retention(index)
        if self._next is None or self._next[0] != inode:
            self._drop_next()
            seg = _open_segment(Path(path))
            if seg is None:
                return None
            self._next = (inode, seg)
        seg = self._next[1]
        if not _written(seg):
            return None
        return seg, prev  # still held as _next until the reader moves to it

    def _past_retention(self, index: int) -> tuple[Segment, int] | None:
        """Segment ``index + 1`` is absent. If retention deleted it (and so ``index``, read
        here through its mapping), the log goes on in the oldest segment left, as a new
        reader would find it: the records deleted unread are skipped. Otherwise it is not
        prepared yet, or missing mid-log: the reader waits."""
        if segment_path(self._dir, index).exists():
            return None
        for later, path in list_segments(self._dir):
            if later > index:
                seg = _open_segment(path)
                if seg is None:
                    continue
                if _written(seg):
                    return seg, 0
                seg.close()
                return None
        return None

    def _drop_next(self) -> None:
        if self._next is not None:
            self._next[1].close()
            self._next = None


def read_journal(directory: Path, from_lsn: int = 1, upto_lsn: int | None = None) -> JournalReader:
    """Records with ``from_lsn <= lsn <= upto_lsn`` in LSN order (see ``JournalReader``)."""
    return JournalReader(directory, from_lsn, upto_lsn)


def end_of_log(directory: Path) -> JournalEnd:
    """The last valid LSN of the log (0: empty) and the damage it stops on, if any.

    The log ends cleanly where a record's length is zero and no later segment continues it;
    anything else there (a nonzero length that fails its checks: the writer stores the length
    last, so a record being written never shows one) is damage.
    """
    directory = Path(directory)
    listed = list_segments(directory)
    for k in range(len(listed) - 1, -1, -1):
        seg = _open_segment(listed[k][1])
        if seg is None:
            continue
        try:
            if not seg.first_lsn():
                continue
            offset, last, _, bad = seg.scan(HEADER_BYTES, 0)
            if bad:
                return JournalEnd(last, _damage_at(seg, offset, last, final=True))
            return JournalEnd(last, None)
        finally:
            seg.close()
    return JournalEnd(0, None)


def durable_mark(directory: Path, newest: int = 3) -> int:
    """The highest durable mark among the ``newest`` segments (0: nothing synced yet).

    The writer stores its durable LSN in the current segment's header after each sync
    returned, so every record at or below the mark is on disk: a reader in another process
    (the publisher) may treat them as surviving a power cut. Three segments cover the
    current one, the one prepared after it and the one just rolled away from.
    """
    best = 0
    for _, path in list_segments(Path(directory))[-newest:]:
        seg = _open_segment(path)
        if seg is None:
            continue  # removed by retention since listed
        try:
            best = max(best, seg.durable_mark())
        finally:
            seg.close()
    return best


def _damage_at(seg: Segment, offset: int, prev: int, *, final: bool) -> Damage:
    """Describe the break at ``offset`` of ``seg`` after LSN ``prev``."""
    path = seg.path
    found = seg.find_valid(offset, 0)
    if found < 0:
        if final:
            text = f"{path}: torn tail at offset {offset} after LSN {prev} (a crash mid-write;"
            return Damage(Break.TORN_TAIL, path, offset, prev, None, text + " recovery trims it)")
        text = f"{path}: damaged at offset {offset} after LSN {prev}; nothing valid follows"
        return Damage(Break.BAD_RECORD, path, offset, prev, None, text + " in this segment")
    resumes = seg.record(found, 0)  # valid: find_valid checked it
    at = resumes[0] if resumes is not None else None
    intact = seg.record(offset, 0)  # checks length and CRC but not the LSN sequence
    if intact is not None:
        text = f"{path}: LSN jumps from {prev} to {intact[0]} at offset {offset}"
        return Damage(Break.LSN_JUMP, path, offset, prev, at, text)
    text = (
        f"{path}: record after LSN {prev} at offset {offset} fails its CRC or length check;"
        f" valid records resume at offset {found}"
    )
    return Damage(Break.BAD_RECORD, path, offset, prev, at, text)


def scan_journal(directory: Path) -> JournalScan:
    """Check every segment's header and every record's CRC and LSN sequence; never raises on
    damage (each break is a ``Damage`` in the result, in log order)."""
    directory = Path(directory)
    listed = list_segments(directory)
    result = JournalScan(segments=len(listed))
    prev = 0  # last valid LSN so far
    for k, (index, path) in enumerate(listed):
        if k and index != listed[k - 1][0] + 1:
            missing = listed[k - 1][0] + 1
            text = f"journal segment {missing} is missing"
            where = str(segment_path(directory, missing))
            result.damage.append(Damage(Break.MISSING_SEGMENT, where, 0, prev, None, text))
        try:
            seg = _open_segment(path)
        except FastfeedError as exc:
            text = f"{path}: {exc}"
            result.damage.append(Damage(Break.UNREADABLE_SEGMENT, str(path), 0, prev, None, text))
            continue
        if seg is None:
            continue
        try:
            prev = _scan_segment(seg, prev, result, last=k == len(listed) - 1)
        finally:
            seg.close()
    result.last_lsn = prev
    return result


def _scan_segment(seg: Segment, prev: int, result: JournalScan, *, last: bool) -> int:
    """Scan one segment's records into ``result``; returns its last valid LSN."""
    offset = HEADER_BYTES
    first = seg.first_lsn()
    if first and prev and first != prev + 1:
        text = f"{seg.path}: starts at LSN {first}, but the previous segment ended at LSN {prev}"
        result.damage.append(Damage(Break.LSN_JUMP, seg.path, offset, prev, first, text))
        prev = 0  # judge the records inside this segment on their own
    if first and not result.first_lsn:
        result.first_lsn = first
    while True:
        offset, prev, _, bad = seg.scan(offset, prev)
        if not bad:
            return prev
        damage = _damage_at(seg, offset, prev, final=last)
        result.damage.append(damage)
        if damage.resumes_at is None:
            return prev
        offset, prev = seg.find_valid(offset, 0), 0
