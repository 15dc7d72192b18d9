"""``fastfeed verify``: a clean recording passes; real damage fails, naming what and where."""

from __future__ import annotations

import shutil
import sqlite3
import struct
from pathlib import Path

import pytest

from fastfeed.cli import main
from fastfeed.journal._wal import HEADER_BYTES, crc32c
from fastfeed.journal.segments import list_segments
from tests.recording import build

DEPTH = ("depth", "AAPL.US")
TRADE = ("trade", "BTC.CC")
_REC = struct.Struct("<IIQqHHI")  # length, crc, lsn, recv_ns, kind, stream, flags (32 bytes)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("rec") / "data", {DEPTH: 300, TRADE: 300})


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    """A private copy to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "data"))


def verify(data: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["verify", "--data-dir", str(data)])
    return code, capsys.readouterr().out


def records(segment: Path) -> list[tuple[int, int]]:
    """(offset, lsn) of every record in a segment file."""
    buf = segment.read_bytes()
    found, off = [], HEADER_BYTES
    while off + 32 <= len(buf):
        length, _, lsn, *_ = _REC.unpack_from(buf, off)
        if length == 0:
            break
        found.append((off, lsn))
        off += (length + 7) & ~7
    return found


# A stream's id in the messages table, by its channel (one symbol each here).
DEPTH_ID = "(SELECT id FROM streams WHERE channel='depth')"
TRADE_ID = "(SELECT id FROM streams WHERE channel='trade')"


def sql(data: Path, statement: str, *params: object) -> None:
    conn = sqlite3.connect(data / "fastfeed.db")
    with conn:
        conn.execute(statement, params)
    conn.close()


def test_a_clean_recording_passes(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = verify(data, capsys)
    assert code == 0, out
    assert "600 messages matched the journal" in out
    assert len(list_segments(data / "journal")) > 3  # the recording spans several segments
    assert out.endswith("OK\n")


def test_a_flipped_byte_in_a_segment_is_named(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seg = list_segments(data / "journal")[1][1]
    offset, lsn = records(seg)[5]
    raw = bytearray(seg.read_bytes())
    raw[offset + 40] ^= 0x01  # inside the payload: the CRC no longer matches
    seg.write_bytes(raw)
    code, out = verify(data, capsys)
    assert code == 1
    assert f"{seg}: record after LSN {lsn - 1} at offset {offset} fails its CRC" in out
    # the record is unreadable, so SQLite's copy of it has no journal record to match
    assert "FAILED" in out


def test_broken_lsn_continuity_is_named(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seg_index, seg = list_segments(data / "journal")[2]
    offset, lsn = records(seg)[3]
    raw = bytearray(seg.read_bytes())
    length, _, _, recv_ns, kind, stream, flags = _REC.unpack_from(raw, offset)
    # Re-number the record and give it a valid CRC: only the LSN sequence is wrong.
    _REC.pack_into(raw, offset, length, 0, lsn + 1000, recv_ns, kind, stream, flags)
    crc = crc32c(bytes(raw[offset + 8 : offset + length]), seg_index & 0xFFFFFFFF)
    struct.pack_into("<I", raw, offset + 4, crc)
    seg.write_bytes(raw)
    code, out = verify(data, capsys)
    assert code == 1
    assert f"{seg}: LSN jumps from {lsn - 1} to {lsn + 1000} at offset {offset}" in out


def test_a_missing_segment_is_named(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index, seg = list_segments(data / "journal")[2]
    seg.unlink()
    code, out = verify(data, capsys)
    assert code == 1
    assert f"journal segment {index} is missing" in out


def test_a_deleted_sqlite_row_is_named(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(data, f"DELETE FROM messages WHERE stream={TRADE_ID} AND seq=150")
    code, out = verify(data, capsys)
    assert code == 1
    assert "(trade:BTC.CC seq 150): in the journal but not in SQLite messages" in out
    assert "trade:BTC.CC epoch 0: seqs 150..150 missing and not in the gap ledger" in out
    assert "trade:BTC.CC: streams table says (records, last_seq of epoch 0) = (300, 300)" in out


def test_a_bogus_sqlite_row_is_named(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(
        data,
        f"INSERT INTO messages VALUES ({DEPTH_ID},0,301,1,?,x'7b7d',0)",
        10_000,
    )
    code, out = verify(data, capsys)
    assert code == 1
    assert "messages row at LSN 10000 (depth:AAPL.US seq 301) is past applied LSN" in out


def test_an_altered_frame_is_named(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(data, f"UPDATE messages SET frame = x'7b7d' WHERE stream={DEPTH_ID} AND seq=7")
    code, out = verify(data, capsys)
    assert code == 1
    assert "(depth:AAPL.US seq 7): SQLite row differs from the journal in ['frame']" in out


def test_a_hole_in_the_gap_ledger_passes_until_the_ledger_forgets_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = build(tmp_path / "data", {DEPTH: 50}, skip={DEPTH: 20})
    code, out = verify(data, capsys)
    assert code == 0, out
    assert "1 seq holes, each in the gap ledger" in out
    sql(data, "DELETE FROM gaps")
    code, out = verify(data, capsys)
    assert code == 1
    assert "depth:AAPL.US epoch 0: seqs 20..20 missing and not in the gap ledger" in out
