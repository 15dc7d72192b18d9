"""The read-only commands on real recordings: ``status``, ``gaps``, ``export`` and ``verify`` write
no byte of a data dir (stopped cleanly, killed, or beside a live recorder), take no lock a
recorder needs, and run on a read-only copy as a user who may write nothing there."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import orjson
import pytest

from fastfeed.datadir import JOURNAL_DIR
from fastfeed.journal import end_of_log

from .harness import DEADLINE_S, REPO, JournalWatch, Recorder, Simulator, cli, status, wait_for

CHANNELS = {"depth": ["AAPL.US"], "trade": ["BTC.CC"]}
NOBODY = 65534
COMMANDS = (
    ("status", "--format", "json"),
    ("gaps", "--format", "json"),
    ("export",),
    ("verify",),
)


def hashes(data_dir: Path, *, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """sha256 of every file in the data dir (SQLite's -wal/-shm and LOCK included)."""
    return {
        name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and (name := str(p.relative_to(data_dir))) not in skip
    }


def run_all(data_dir: Path) -> dict[str, str]:
    """Every read-only command's stdout; each must succeed."""
    out = {}
    for command in COMMANDS:
        proc = cli(command[0], "--data-dir", str(data_dir), *command[1:])
        assert proc.returncode == 0, f"{command}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        out[command[0]] = proc.stdout
    return out


def record_some(rec: Recorder, data_dir: Path, seqs: int) -> None:
    watch = JournalWatch(data_dir / JOURNAL_DIR)
    rec.until(
        lambda: all(watch.poll().max_seq.get((ch, s), 0) >= seqs for ch, s in streams()),
        f"{seqs} seqs journaled on every stream",
    )


def streams() -> list[tuple[str, str]]:
    return [(ch, s) for ch, syms in CHANNELS.items() for s in syms]


def test_a_killed_and_a_stopped_recorders_dir_stay_byte_identical(
    tmp_path: Path, sim: Simulator, data_dir: Path
) -> None:
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        rec.start()
        record_some(rec, data_dir, 300)
        rec.kill()  # SQLite's -wal/-shm stay, and a journal tail SQLite never got
        assert (data_dir / "fastfeed.db-wal").exists()
        before = hashes(data_dir)
        killed = run_all(data_dir)
        assert hashes(data_dir) == before
        # Everything journaled is in the answer, derived in memory past SQLite.
        assert (
            orjson.loads(killed["status"])["applied_lsn"]
            == end_of_log(data_dir / "journal").last_lsn
        )

        rec.start()
        record_some(rec, data_dir, 600)
        assert rec.stop() == 0  # SQLite checkpointed and its side files removed
        assert not (data_dir / "fastfeed.db-wal").exists()
        before = hashes(data_dir)
        run_all(data_dir)
        assert hashes(data_dir) == before


def test_beside_a_live_recorder_nothing_is_written_and_a_recorder_can_start_meanwhile(
    tmp_path: Path, sim: Simulator, data_dir: Path
) -> None:
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        rec.start()
        record_some(rec, data_dir, 300)
        # Files the recorder itself leaves alone meanwhile: the stamp and full segments.
        segments = sorted((data_dir / JOURNAL_DIR).glob("seg-*.wal"))
        still = {"FORMAT", *(str(p.relative_to(data_dir)) for p in segments[:-2])}
        before = {k: v for k, v in hashes(data_dir).items() if k in still}
        run_all(data_dir)
        assert {k: v for k, v in hashes(data_dir).items() if k in still} == before
        assert rec.running()  # no lock the recorder needs was taken
        assert rec.stop() == 0
        total = sum(s["records"] for s in status(data_dir)["streams"])

        # An export held mid-way (its stdout not read) keeps its view open while a recorder
        # starts on the same dir and records.
        export = subprocess.Popen(
            [sys.executable, "-m", "fastfeed", "export", "--data-dir", str(data_dir)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # unbuffered: communicate() reads the fd, past any buffer readline filled
        )
        try:
            assert export.stdout is not None
            first = export.stdout.readline()  # it is running, blocked on a full pipe
            assert first.startswith(b"{")
            journaled = end_of_log(data_dir / JOURNAL_DIR).last_lsn
            rec.start()
            wait_for(
                lambda: end_of_log(data_dir / JOURNAL_DIR).last_lsn > journaled + 100,
                "the second recorder to record while export runs",
            )
            rest, err = export.communicate(timeout=DEADLINE_S)
        finally:
            if export.poll() is None:
                export.kill()
                export.wait()
        assert export.returncode == 0, err
        assert rec.running()
        assert rec.stop() == 0
    # The answer as of its start: what the first recorder left, nothing of the second's.
    assert len([first, *rest.splitlines()]) == total


def runnable_as_nobody() -> tuple[list[str], dict[str, str]]:
    """An interpreter the nobody user can run, with this checkout and its packages on the path.

    The test's own interpreter may sit under a directory only root can enter (a pyenv in
    /root); a system interpreter of the same version loads the same packages.
    """
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as another user")
    paths = sysconfig.get_paths()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join([str(REPO), paths["purelib"], paths["platlib"]]),
    }
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    for exe in (sys.executable, f"/usr/bin/{version}"):
        probe = subprocess.run(
            [*setpriv, exe, "-c", "import fastfeed.cli, fastfeed.journal._wal"],
            env=env,
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return [*setpriv, exe, "-m", "fastfeed"], env
    pytest.skip(f"no {version} that the nobody user can run with this checkout's packages")


@pytest.mark.parametrize("stop", ["kill", "stop"])
def test_a_read_only_copy_answers_for_a_user_who_can_write_nothing(
    tmp_path: Path, sim: Simulator, data_dir: Path, stop: str
) -> None:
    command, env = runnable_as_nobody()
    with Recorder(tmp_path, data_dir, sim.url, CHANNELS) as rec:
        rec.start()
        record_some(rec, data_dir, 300)
        if stop == "kill":
            rec.kill()
        else:
            assert rec.stop() == 0
    expected = run_all(data_dir)
    base = Path(tempfile.mkdtemp(prefix="fastfeed-ro-"))  # pytest's tmp_path is root's alone
    try:
        base.chmod(0o755)
        copy = Path(shutil.copytree(data_dir, base / "copy"))
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(copy)], check=True)
        subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True)
        check_as_nobody(command, env, copy, expected)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=True)
        shutil.rmtree(base)


def check_as_nobody(
    command: list[str], env: dict[str, str], copy: Path, expected: dict[str, str]
) -> None:
    before = hashes(copy)
    for name, *flags in COMMANDS:
        proc = subprocess.run(
            [*command, name, "--data-dir", str(copy), *flags],
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        if name == "verify":
            assert proc.stdout.endswith("OK\n")
        else:
            assert proc.stdout == expected[name]
    assert hashes(copy) == before
