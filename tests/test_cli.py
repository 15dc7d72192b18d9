"""The command line: one readable line for every bad input, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastfeed import __version__


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    full_env = {k: v for k, v in os.environ.items() if k != "TICKDB_API_KEY"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fastfeed", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        cwd=cwd,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"fastfeed {__version__}"


def test_missing_api_key_says_what_to_set(tmp_path: Path) -> None:
    proc = run_cli("--channels", "depth:AAPL.US", "--data-dir", str(tmp_path / "d"))
    assert_one_line_error(proc, "TICKDB_API_KEY", "--api-key-file", "--venue sim")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--channels", "depth"], "expected CHANNEL:SYM"),
        (["--channels", "book:AAPL.US"], "unknown channel 'book'"),
        (["--channels", "depth:AAPL US"], "bad symbol"),
        (["--channels", "depth:" + "A" * 100], "bad symbol"),
        (["--fsync", "sometimes"], "invalid choice"),
        (["--venue", "sim"], "nothing to record"),
        (
            ["--venue", "sim", "--channels", "depth:X", "--config", "/nonexistent.toml"],
            "cannot read config",
        ),
    ],
)
def test_bad_flags_get_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    proc = run_cli(*args, "--data-dir", str(tmp_path / "d"))
    assert_one_line_error(proc, needle)


def test_unreadable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    proc = run_cli(
        "--venue", "sim", "--channels", "depth:AAPL.US", "--data-dir", str(blocker / "sub")
    )
    assert_one_line_error(proc, "data dir")


def test_bad_toml_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("venue = [unclosed\n")
    proc = run_cli("--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert_one_line_error(proc, "not valid TOML")


def test_unknown_toml_key_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('venue = "sim"\nchanels = ["depth:AAPL.US"]\n')
    proc = run_cli("--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert_one_line_error(proc, "unknown key 'chanels'")


def test_status_on_missing_data_dir(tmp_path: Path) -> None:
    proc = run_cli("status", "--data-dir", str(tmp_path / "nope"))
    assert_one_line_error(proc, "no data dir")


def test_a_mistyped_command_is_named_with_the_commands(tmp_path: Path) -> None:
    proc = run_cli("stauts", "--data-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr == (
        "fastfeed: unknown command 'stauts': expected one of"
        " run, sim, status, gaps, export, verify, replay, tail\n"
    )


def test_help_names_the_key_variable_and_defaults() -> None:
    text = run_cli("run", "--help").stdout
    assert "TICKDB_API_KEY" in text
    assert "default group" in text and "default info" in text
    assert "default ./fastfeed-data" in run_cli("status", "--help").stdout
