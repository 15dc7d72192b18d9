"""``fastfeed verify`` on a real recording: passes beside a running recorder and after it stops,
and changes nothing in the data dir."""

from __future__ import annotations

from pathlib import Path

from .harness import Recorder, Simulator, cli, status


def snapshot(data_dir: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file verify must leave as it was.

    Not SQLite's -wal/-shm side files: a read-only open of a WAL database recreates them empty
    when the writer has removed them on close, as ``status`` does too.
    """
    return {
        str(p.relative_to(data_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def test_verify_passes_beside_a_recorder_and_after_it(
    tmp_path: Path, sim: Simulator, data_dir: Path
) -> None:
    channels = {"depth": ["AAPL.US"], "trade": ["BTC.CC"]}
    with Recorder(tmp_path, data_dir, sim.url, channels) as rec:
        rec.start()
        rec.until(
            lambda: (
                len(s := status(data_dir)["streams"]) == 2 and all(x["last_seq"] >= 200 for x in s)
            ),
            "200 seqs on both streams",
        )
        live = cli("verify", "--data-dir", str(data_dir))
        assert live.returncode == 0, live.stdout + live.stderr
        assert live.stdout.endswith("OK\n")
        assert rec.running()  # verify took no lock the recorder needs
        assert rec.stop() == 0
    before = snapshot(data_dir)
    done = cli("verify", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(data_dir) == before
