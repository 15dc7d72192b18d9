"""Recovery on open: find the end of the log, repair a torn tail, refuse mid-log corruption.

The scan stops at the first zero length, impossible length, CRC mismatch or LSN that is not
previous + 1. What follows the stop point decides what it means:

* nothing valid after it (in that segment or any later one): a torn tail, the normal result of
  a crash or power loss mid-append. The damaged bytes are zeroed and synced; appending resumes
  there. Nothing acknowledged as durable is lost, since a record is durable only once synced.
* valid records after it, past the durable mark: a power cut. The page cache writes pages
  back in any order, so records appended after the last sync can survive behind a page that
  did not. None of them was ever reported durable, so they go like a torn tail: the log is
  truncated at the stop point and the report says what was dropped. The mark is the LSN the
  writer stored in a segment header after a sync returned; it reaches the disk with the next
  sync, so it never claims more than was durable.
* valid records after it, at or before the durable mark: mid-log corruption (disk damage).
  Refused with ``JournalCorrupt`` unless ``repair=True``, which truncates the same way. Only
  damage within the last group commit before a power cut (between the mark on disk and the
  real durable point) could be taken for a torn tail.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastfeed.errors import JournalCorrupt
from fastfeed.journal._wal import HEADER_BYTES, Segment
from fastfeed.journal.segments import fsync_dir, list_segments

__all__ = ["Recovered", "RecoveryReport", "recover"]

SyncRange = Callable[[Segment, int, int], None]


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the journal found and did."""

    records_kept: int
    bytes_kept: int
    records_dropped: int
    bytes_dropped: int
    last_lsn: int
    repaired: bool

    def __str__(self) -> str:
        text = (
            f"journal: {self.records_kept} records ({self.bytes_kept} bytes) up to LSN"
            f" {self.last_lsn}"
        )
        if self.repaired:
            text += f"; repaired, dropped {self.records_dropped} ({self.bytes_dropped} bytes)"
        return text


@dataclass(slots=True)
class Recovered:
    """The log as recovery left it: where to append next and each segment's first LSN."""

    report: RecoveryReport
    segments: list[Segment]  # writable mappings, index order; the caller closes them
    resume: int  # position in ``segments`` of the segment to append to (-1: no segments)
    offset: int  # where the next record goes in it
    first_lsns: dict[int, int] = field(default_factory=dict)  # segment index -> first LSN


def _valid_after(segments: list[Segment], pos: int, offset: int, above: int) -> bool:
    """Whether any valid record with LSN > ``above`` exists after (pos, offset)."""
    if segments[pos].find_valid(offset, above) >= 0:
        return True
    return any(seg.find_valid(HEADER_BYTES, above) >= 0 for seg in segments[pos + 1 :])


def _count_valid(seg: Segment, offset: int, above: int) -> int:
    """Valid records from ``offset`` on, resynchronising past damage (for the report only)."""
    count = 0
    found = seg.find_valid(offset, above)
    while found >= 0:
        end, last, n, _ = seg.scan(found, 0)
        count += n
        found = seg.find_valid(end, last)
    return count


def _open_all(directory: Path, repair: bool) -> list[Segment]:
    """Map every segment read-write, checking names, headers and that indexes are contiguous."""
    segments: list[Segment] = []
    try:
        listed = list_segments(directory)
        for k, (index, path) in enumerate(listed):
            if k and index != listed[k - 1][0] + 1:
                if not repair:
                    raise JournalCorrupt(
                        f"journal segment {listed[k - 1][0] + 1} is missing before {path}",
                        segment=str(path),
                        offset=0,
                        hint="restart with --repair-journal to drop the segments after the gap",
                    )
                for _, later in listed[k:]:
                    os.unlink(later)
                fsync_dir(directory)
                break
            seg = Segment(str(path), writable=True)
            segments.append(seg)
            if seg.index != index:
                raise JournalCorrupt(
                    f"segment {path} says it is index {seg.index}",
                    segment=str(path),
                    offset=16,
                )
    except BaseException:
        for seg in segments:
            seg.close()
        raise
    return segments


def recover(directory: Path, *, repair: bool, sync: SyncRange) -> Recovered:
    """Scan the log in ``directory``, repair what may be repaired, and say where to resume."""
    segments = _open_all(directory, repair)
    if not segments:
        return Recovered(RecoveryReport(0, 0, 0, 0, 0, False), [], -1, HEADER_BYTES)
    first_lsns: dict[int, int] = {}
    kept = kept_bytes = 0
    prev = 0
    pos = 0
    while True:
        seg = segments[pos]
        offset, last, count, bad = seg.scan(HEADER_BYTES, prev)
        if count:
            first_lsns[seg.index] = seg.first_lsn()
        kept += count
        kept_bytes += offset - HEADER_BYTES
        prev = last
        # The log continues in the next segment only if this one ended cleanly (rollover
        # leaves zeros), nothing valid hides behind the end, and the next starts at prev + 1.
        if (
            not bad
            and prev
            and pos + 1 < len(segments)
            and segments[pos + 1].record(HEADER_BYTES, prev) is not None
            and seg.find_valid(offset, prev) < 0
        ):
            pos += 1
            continue
        break
    stop_seg = segments[pos]
    dropped_bytes = stop_seg.extent(offset) - offset
    dropped_bytes += sum(s.extent(HEADER_BYTES) - HEADER_BYTES for s in segments[pos + 1 :])
    mark = max(s.durable_mark() for s in segments)
    if _valid_after(segments, pos, offset, prev):
        if prev < mark and not repair:
            for s in segments:
                s.close()
            raise JournalCorrupt(
                f"journal segment {stop_seg.path} is damaged at offset {offset} (after LSN"
                f" {prev}, below LSN {mark} known durable) and valid records follow",
                segment=stop_seg.path,
                offset=offset,
                hint="restart with --repair-journal to truncate the log there (the records"
                " after it are dropped)",
            )
        dropped = 1 + _count_valid(stop_seg, offset, prev)  # the damaged one and those after
        dropped += sum(_count_valid(s, HEADER_BYTES, 0) for s in segments[pos + 1 :])
        # Truncate: later segments go entirely (last first, so a crash midway still leaves
        # a prefix of the log), then the rest of the stop segment is zeroed.
        for s in reversed(segments[pos + 1 :]):
            s.close()
            os.unlink(s.path)
        del segments[pos + 1 :]
        fsync_dir(directory)
        _zero_tail(stop_seg, offset, sync)
    else:
        # Torn tail: zero whatever a crash left half-written, here and in later (prepared)
        # segments, so the next append starts on zeros and readers see a clean end.
        dropped = 1 if dropped_bytes else 0
        _zero_tail(stop_seg, offset, sync)
        for s in segments[pos + 1 :]:
            _zero_tail(s, HEADER_BYTES, sync)
    report = RecoveryReport(kept, kept_bytes, dropped, dropped_bytes, prev, dropped_bytes > 0)
    return Recovered(report, segments, pos, offset, first_lsns)


def _zero_tail(seg: Segment, offset: int, sync: SyncRange) -> None:
    """Zero [offset, last nonzero byte] of ``seg`` and make the zeros durable."""
    end = seg.extent(offset)
    if end > offset:
        seg.zero(offset, end)
        sync(seg, offset, end)
