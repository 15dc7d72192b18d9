"""Recorder settings: channel specs and symbols validated, limits and storage knobs checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastfeed import defaults
from fastfeed.errors import ConfigError
from fastfeed.recorder.config import RecorderConfig, parse_channel_specs, validate

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[1]


def sim_config(**changes: object) -> RecorderConfig:
    """A config that validates, with ``changes`` applied."""
    config = RecorderConfig(venue="sim", channels={"depth": ["AAPL.US"]})
    for name, value in changes.items():
        setattr(config, name, value)
    return config


@pytest.mark.parametrize(
    "symbol",
    [
        "x');DROP TABLE messages;--",  # SQL shapes: quote, semicolon, space
        "AAPL.US\x00",  # a NUL would cut a C string or a file name short
        "A\nB",  # a newline would forge a log line
        "A" * 33,  # longer than MAX_SYMBOL_LEN
        "$(reboot)",
    ],
)
def test_hostile_symbols_are_refused(symbol: str) -> None:
    with pytest.raises(ConfigError, match="bad symbol"):
        parse_channel_specs([f"depth:{symbol}"])


def test_the_stream_limit_per_connection_is_enforced() -> None:
    limit = defaults.MAX_STREAMS_PER_CONNECTION
    half = [f"S{i}" for i in range(limit // 2)]
    # Exactly at the limit (over two channels) is fine; one more is refused.
    subs = parse_channel_specs([f"depth:{','.join(half)}", f"trade:{','.join(half)}"])
    assert sum(len(s) for s in subs.values()) == limit
    with pytest.raises(ConfigError, match=rf"^{limit + 1} streams requested; .* at most {limit}$"):
        parse_channel_specs([f"depth:{','.join(half)}", f"trade:{','.join([*half, 'X'])}"])


def test_repeated_symbols_count_once() -> None:
    assert parse_channel_specs(["depth:A,A", "depth:A"]) == {"depth": ["A"]}


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"segment_mib": 0}, "segment size 0 MiB is outside 1..4095"),
        ({"segment_mib": 4096}, "segment size 4096 MiB"),
        ({"segment_mib": "64"}, "segment size '64' MiB"),  # a TOML string, not a number
        ({"min_free_mib": -1}, "minimum free space -1 MiB"),
        ({"segment_mib": 16}, "16 MiB cannot hold the largest frame accepted .*: give"),
    ],
)
def test_storage_knobs_are_validated(changes: dict[str, object], needle: str) -> None:
    validate(sim_config(), None)
    with pytest.raises(ConfigError, match=needle):
        validate(sim_config(**changes), None)


def test_too_many_streams_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    symbols = ",".join(f"S{i}" for i in range(defaults.MAX_STREAMS_PER_CONNECTION + 1))
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "fastfeed", "--venue", "sim"),
            *("--channels", f"depth:{symbols}", "--data-dir", str(tmp_path / "d")),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "streams requested" in proc.stderr
    assert not (tmp_path / "d").exists()


def test_a_segment_too_small_for_the_largest_frame_is_refused_in_one_line(tmp_path: Path) -> None:
    # Before: --segment-mib 1 recorded until a frame over 1 MiB arrived, then the append
    # failed inside the frame callback and the run ended in an ExceptionGroup traceback.
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "fastfeed", "--venue", "sim", "--segment-mib", "1"),
            *("--channels", "depth:AAPL.US", "--data-dir", str(tmp_path / "d")),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "fastfeed: segment size 1 MiB cannot hold the largest frame accepted"
        f" ({defaults.MAX_FRAME_BYTES} bytes): give --segment-mib 17 or more\n"
    )
    assert not (tmp_path / "d").exists()
