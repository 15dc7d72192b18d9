"""``status``, ``gaps``, ``export``: what SQLite lacks is derived in memory, exactly as a catch-up
would write it, without writing a byte of the data dir; journal damage SQLite already holds does
not block them."""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import orjson
import pytest

from fastfeed import catchup, defaults
from fastfeed.catchup import open_view
from fastfeed.cli import main
from fastfeed.datadir import JOURNAL_DIR, STORE_FILE
from fastfeed.journal import FsyncMode, Journal, JournalReader, JournalRecord, RecordKind
from fastfeed.journal._wal import HEADER_BYTES
from fastfeed.journal.segments import list_segments
from fastfeed.sim.content import StreamGenerator
from fastfeed.store import Store
from tests.recording import SEGMENT_BYTES, build, catch_up, recv_ns

DEPTH = ("depth", "AAPL.US")
TRADE = ("trade", "BTC.CC")
_LENGTH = struct.Struct("<I")


def hashes(data: Path) -> dict[str, str]:
    """sha256 of every file under ``data`` (SQLite's side files included)."""
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def behind(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording whose SQLite stops at LSN 200 while the journal goes on to 300, with a gap."""
    data = build(tmp_path_factory.mktemp("rec") / "data", {DEPTH: 100, TRADE: 100})
    gens = {key: StreamGenerator(1, *key) for key in (DEPTH, TRADE)}
    for gen in gens.values():
        for _ in range(100):
            gen.next()
    with Journal.open(data / JOURNAL_DIR, segment_bytes=SEGMENT_BYTES, fsync=FsyncMode.NONE) as j:
        for seq in range(101, 151):
            for key, gen in gens.items():
                frame = gen.next()
                if key == TRADE and seq == 120:
                    continue  # a hole: an open gap only the journal part knows about
                j.append(RecordKind.INBOUND, 1, recv_ns(j.accepted_lsn + 1), frame)
    return data


def answers(data: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """What every read-only command prints (JSON forms), but how much of it SQLite held."""
    got = {}
    for command in (["status", "--format", "json"], ["gaps", "--format", "json"], ["export"]):
        assert main([command[0], "--data-dir", str(data), *command[1:]]) == 0
        got[command[0]] = capsys.readouterr().out
    status = orjson.loads(got["status"])
    got["applied_lsn"] = str(status.pop("applied_lsn"))
    got["status"] = orjson.dumps(status).decode()
    return got


def test_the_answer_equals_a_catch_ups_and_nothing_is_written(
    behind: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = hashes(behind)
    derived = answers(behind, capsys)
    assert hashes(behind) == before  # not a byte written, not a file created

    caught = Path(shutil.copytree(behind, tmp_path / "caught"))
    with Journal.open(caught / JOURNAL_DIR, fsync=FsyncMode.NONE) as journal:
        assert catch_up(caught, journal) == 99  # SQLite really was behind
    again = answers(caught, capsys)
    assert (derived.pop("applied_lsn"), again.pop("applied_lsn")) == ("200", "299")
    assert again == derived

    status = orjson.loads(derived["status"])
    assert status["journal_lsn"] == 299
    trade = [s for s in status["streams"] if s["channel"] == "trade"]
    assert trade[0]["last_seq"] == 150 and trade[0]["gaps_open"] == 1
    lines = derived["export"].splitlines()
    assert len(lines) == 299 and orjson.loads(lines[-1])["seq"] == 150


def test_export_refuses_to_derive_more_than_its_memory_bound(
    behind: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "VIEW_PENDING_BYTES", 1000)
    assert main(["export", "--data-dir", str(behind)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "start the recorder on this data dir once" in err
    assert main(["status", "--data-dir", str(behind)]) == 0  # keeps no messages: no bound


def test_no_sqlite_file_yet_is_answered_from_the_journal(
    behind: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(shutil.copytree(behind, tmp_path / "data"))
    (data / STORE_FILE).unlink()
    assert main(["status", "--data-dir", str(data), "--format", "json"]) == 0
    status = orjson.loads(capsys.readouterr().out)
    assert [s["records"] for s in status["streams"]] == [150, 149]
    assert not (data / STORE_FILE).exists()


def damage_a_record(data: Path, lsn: int) -> Path:
    """Flip a payload byte of the record at ``lsn``; returns its segment."""
    for _, path in list_segments(data / JOURNAL_DIR):
        buf = bytearray(path.read_bytes())
        off = HEADER_BYTES
        while off + 32 <= len(buf):
            (length,) = _LENGTH.unpack_from(buf, off)
            if length == 0:
                break
            if struct.unpack_from("<Q", buf, off + 8)[0] == lsn:
                buf[off + 40] ^= 0xFF
                path.write_bytes(bytes(buf))
                return path
            off += (length + 7) & ~7
    raise AssertionError(f"no record {lsn}")


def test_damage_sqlite_already_holds_does_not_block_the_readers(
    behind: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(shutil.copytree(behind, tmp_path / "data"))
    segment = damage_a_record(data, 50)  # applied to SQLite (it reached LSN 200)
    derived = answers(data, capsys)
    assert answers(behind, capsys) == derived  # the whole answer, past the damage too
    assert main(["status", "--data-dir", str(data)]) == 0
    err = capsys.readouterr().err
    assert f"journal damaged (already in SQLite, answered from it): {segment}" in err
    assert "after LSN 49" in err


def test_damage_past_sqlite_stops_the_answer_there_and_says_so(
    behind: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(shutil.copytree(behind, tmp_path / "data"))
    damage_a_record(data, 250)
    assert main(["status", "--data-dir", str(data), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert orjson.loads(captured.out)["journal_lsn"] == 249
    assert "after LSN 249" in captured.err and "this answer stops at LSN 249" in captured.err


def test_without_sqlite_the_venue_comes_from_the_journal(tmp_path: Path) -> None:
    # Issue: rebuilding from the journal labelled every stream tickdb, whatever was recorded.
    (tmp_path / "FORMAT").write_text("1\n")
    started = {"event": "started", "venue": "sim", "subscriptions": {"depth": ["AAPL.US"]}}
    gen = StreamGenerator(1, *DEPTH)
    with Journal.open(tmp_path / JOURNAL_DIR, fsync=FsyncMode.NONE) as j:
        j.append(RecordKind.CONTROL, 0, recv_ns(1), orjson.dumps(started))
        for _ in range(3):
            j.append(RecordKind.INBOUND, 1, recv_ns(j.accepted_lsn + 1), gen.next())
    view = open_view(tmp_path, messages=True)
    try:
        assert [s["venue"] for s in view.store.status(view.pending)["streams"]] == ["sim"]
        assert {m.venue for m in view.store.iter_messages(pending=view.pending)} == {"sim"}
    finally:
        view.close()


def test_a_read_without_locks_notices_a_writer_that_changed_the_file(
    behind: Path, tmp_path: Path
) -> None:
    data = Path(shutil.copytree(behind, tmp_path / "data"))
    assert not (data / f"{STORE_FILE}-wal").exists()  # stopped cleanly: read immutable
    reader = Store.open(data / STORE_FILE, readonly=True)
    try:
        assert not reader.changed()
        with Journal.open(data / JOURNAL_DIR, fsync=FsyncMode.NONE) as journal:
            assert catch_up(data, journal) == 99  # a recorder's start: it writes and checkpoints
        assert reader.changed()
    finally:
        reader.close()


def test_a_reader_answers_as_of_its_start_while_a_recorder_outpaces_it(
    behind: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A recorder journaling faster than a read-only command derives must not keep it chasing
    # the tail: it answers up to the log's end when it started. Here two more records are
    # journaled for every record the view takes.
    data = Path(shutil.copytree(behind, tmp_path / "data"))
    frame = StreamGenerator(1, *DEPTH).next()
    with Journal.open(data / JOURNAL_DIR, segment_bytes=SEGMENT_BYTES) as j:
        end = j.accepted_lsn

        class Outpaced(JournalReader):
            def take(self, limit: int, upto: int | None = None) -> list[JournalRecord]:
                out = super().take(limit, upto)
                if j.accepted_lsn < end + 10_000:
                    for _ in range(2 * len(out)):
                        j.append(RecordKind.INBOUND, 1, recv_ns(j.accepted_lsn + 1), frame)
                return out

        monkeypatch.setattr(catchup, "read_journal", Outpaced)
        view = open_view(data, messages=False)
        assert j.accepted_lsn > end  # the recorder did go on meanwhile
        assert view.pending is not None and view.pending.applied_lsn == end
        view.close()
