"""The publisher's journal follower: one reader for the whole run, bounded by the durable LSN."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastfeed.journal import FsyncMode, Journal, RecordKind
from fastfeed.publish import follower
from fastfeed.publish.follower import Follower
from fastfeed.sim.content import StreamGenerator
from tests.recording import count_readers


def test_the_follower_reads_each_durable_record_once_with_one_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = count_readers(monkeypatch, follower)
    gen = StreamGenerator(1, "depth", "AAPL.US")
    with Journal.open(tmp_path, fsync=FsyncMode.NONE, segment_bytes=8192) as journal:

        def append(n: int) -> None:
            for _ in range(n):
                journal.append(RecordKind.INBOUND, 1, 1_000, gen.next())

        follow = Follower(tmp_path, "sim", "md")
        append(10)
        ends = []
        for durable, most in ((4, 100), (4, 100), (10, 3), (10, 100)):
            chunk = follow.poll(durable, most)
            ends.append(None if chunk is None else (chunk.end_lsn, len(chunk.messages)))
        # a record past the durable LSN waits for the next poll; none is read twice
        assert ends == [(4, 4), None, (7, 3), (10, 3)]
        while journal.write_offset[0] < 3:
            append(1)
            chunk = follow.poll(journal.accepted_lsn, 100)
            assert chunk is not None and chunk.end_lsn == journal.accepted_lsn
            assert len(chunk.messages) == 1
        assert opened == [1]
        follow.close()


def test_a_follower_behind_retention_goes_on_from_the_oldest_record_left(tmp_path: Path) -> None:
    # Retention deleted more records than one poll may take: the follower must still go on
    # from the oldest record left (counting the rest as skipped), not wait for ever.
    gen = StreamGenerator(1, "depth", "AAPL.US")
    with Journal.open(tmp_path, fsync=FsyncMode.NONE, segment_bytes=4096) as journal:
        for _ in range(600):
            journal.append(RecordKind.INBOUND, 1, 1_000, gen.next())
        journal.sync()
        journal.release_before(500)
        follow = Follower(tmp_path, "sim", "md")
        chunk = follow.poll(journal.accepted_lsn, 50)
        assert chunk is not None
        assert follow.skipped > 50
        assert follow.next_lsn == follow.skipped + 51
        follow.close()
