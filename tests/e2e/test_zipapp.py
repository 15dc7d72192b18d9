"""The README's first command: build the one-file app, record from its simulator, Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastfeed import __version__
from fastfeed.sim.content import StreamGenerator

from .harness import REPO, Recorder, export, status, stream_keys

__all__: list[str] = []

CHANNELS = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]}
BUILD_TIMEOUT_S = 600.0


def copy_worktree(dest: Path) -> None:
    """Copy the files git would ship (tracked or new, not ignored), sharing the repo's .venv.

    The build then writes dist/ in the copy, never under another test's feet in the repo.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")


def pyz_run(pyz: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(pyz), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def assert_contiguous_sim_bytes(rows: list[dict[str, Any]], channel: str, symbol: str) -> None:
    """Seqs run without a hole from the first recorded, each frame the simulator's bytes."""
    first = rows[0]["seq"]
    assert [r["seq"] for r in rows] == list(range(first, first + len(rows)))
    gen = StreamGenerator(1, channel, symbol)
    for _ in range(first - 1):
        gen.next()
    assert all(row["frame"].encode() == gen.next() for row in rows)


@pytest.mark.slow
def test_built_zipapp_records_from_the_builtin_simulator_and_stops_on_sigint(
    tmp_path: Path, data_dir: Path
) -> None:
    tree = tmp_path / "tree"
    copy_worktree(tree)
    build = subprocess.run(
        ["bash", "scripts/build_pyz.sh"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    pyz = tree / "dist" / "fastfeed.pyz"
    env = {**os.environ, "SHIV_ROOT": str(tmp_path / "shiv")}
    env.pop("TICKDB_API_KEY", None)  # --venue sim needs none
    version = pyz_run(pyz, env, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"fastfeed {__version__}")

    with Recorder(tmp_path, data_dir, "", CHANNELS, key=None) as rec:
        # The README's form: no command word, --venue sim; the default log format.
        rec.args = [
            sys.executable,
            str(pyz),
            "--venue",
            "sim",
            *[f"--channels={ch}:{','.join(syms)}" for ch, syms in CHANNELS.items()],
            "--data-dir",
            str(data_dir),
        ]
        rec.env = env
        rec.start()
        rec.until(
            lambda: (
                {(s["channel"], s["symbol"]) for s in status(data_dir)["streams"]}
                == stream_keys(CHANNELS)
            ),
            "all three streams recorded",
        )
        assert rec.stop(signal.SIGINT) == 0
    shown = pyz_run(pyz, env, "status", "--data-dir", str(data_dir), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    streams = orjson.loads(shown.stdout)["streams"]
    assert {(s["venue"], s["channel"], s["symbol"]) for s in streams} == {
        ("sim", channel, symbol) for channel, symbol in stream_keys(CHANNELS)
    }
    assert all(s["records"] > 0 and s["gaps_open"] == 0 for s in streams)
    for (channel, symbol), rows in export(data_dir).items():
        assert_contiguous_sim_bytes(rows, channel, symbol)
