"""The command line: one readable line for every bad input, never a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastfeed import __version__
from tests.recording import build


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
    assert proc.stdout.strip() == f"fastfeed {__version__} (from source: no build info)"


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
            ["--venue", "okx", "--channels", "books:BTC-USDT", "--rest-endpoint", "http://h"],
            "--rest-endpoint does not apply to --venue okx",
        ),
        (
            ["--venue", "kraken", "--channels", "book:BTC/USD", "--rotate-after", "60"],
            "--rotate-after does not apply to --venue kraken",
        ),
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
        " run, sim, status, gaps, export, verify, replay, tail, publish\n"
    )


def test_help_names_the_key_variable_and_defaults() -> None:
    text = run_cli("run", "--help").stdout
    assert "TICKDB_API_KEY" in text
    assert "default group" in text and "default info" in text
    assert "default ./fastfeed-data" in run_cli("status", "--help").stdout


@pytest.mark.parametrize("command", ["status", "gaps", "verify"])
def test_output_to_a_full_device_is_one_line(command: str, tmp_path: Path) -> None:
    data = build(tmp_path / "data", {("depth", "AAPL.US"): 50})
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "fastfeed", command, "--data-dir", str(data)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert proc.returncode == 1
    assert proc.stderr == "fastfeed: cannot write the output: No space left on device\n"


def test_ctrl_c_while_starting_never_prints_a_traceback(tmp_path: Path) -> None:
    data = build(tmp_path / "data", {("depth", "AAPL.US"): 50})
    # The child says "go" once the interpreter is up and fastfeed/__main__.py is compiled (a
    # Ctrl-C during CPython's own start-up is CPython's to report), then runs it.
    child = (
        "import pathlib, sys, fastfeed;"
        " path = pathlib.Path(fastfeed.__file__).with_name('__main__.py');"
        " code = compile(path.read_text(), str(path), 'exec');"
        f" sys.argv = ['fastfeed', 'status', '--data-dir', {str(data)!r}];"
        " print('go', flush=True); exec(code, {'__name__': '__main__'})"
    )
    # The delays place SIGINT during imports, argument parsing and the command itself;
    # whatever it interrupts, the answer is an exit code, not a traceback.
    for delay in (0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.25):
        proc = subprocess.Popen(
            [sys.executable, "-c", child],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "go\n"
        time.sleep(delay)  # the moment of the signal, not a wait for an outcome
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, (delay, err)
        # -SIGINT: the signal came as the interpreter was exiting after the command's end.
        assert proc.returncode in (0, 130, -signal.SIGINT), (delay, proc.returncode, err)


def test_sim_and_replay_on_an_address_they_cannot_listen_on_are_one_line(tmp_path: Path) -> None:
    data = build(tmp_path / "data", {("depth", "AAPL.US"): 5})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args in (
            ("sim", "--port", port),
            ("sim", "--host", "192.0.2.1", "--port", "0"),  # TEST-NET-1: not this host's
            ("replay", "--data-dir", str(data), "--port", port),
        ):
            proc = run_cli(*args)
            assert_one_line_error(proc, "cannot listen on")
