"""Recorder settings: channel specs and symbols validated, limits and storage knobs checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastfeed import defaults
from fastfeed.errors import ConfigError
from fastfeed.recorder.config import (
    _TOML_TYPES,
    RecorderConfig,
    load_api_key,
    load_toml,
    parse_channel_specs,
    validate,
)

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


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('log_format = "xml"', 'log_format must be "text" or "json", got \'xml\''),
        ("data_dir = {a=1}", "data_dir must be a path string, got {'a': 1}"),
        ("endpoint = 5", "endpoint must be a ws:// or wss:// URL string, got 5"),
        ('stall_timeout_s = "5"', "stall_timeout_s must be a number of seconds, got '5'"),
        ('log_level = "verbose"', "log_level must be"),
        ("segment_mib = true", "segment_mib must be a whole number of MiB, got True"),
        ('repair_journal = "no"', "repair_journal must be true or false, got 'no'"),
        ("channels = 5", "channels must be a list of"),
        ('fsync = "sometimes"', 'fsync must be "group", "always" or "none"'),
    ],
)
def test_toml_values_are_type_checked(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_toml(path)


def test_every_config_field_has_a_toml_type() -> None:
    # A new setting must say what its TOML value may be, or a wrong type would pass unchecked.
    fields = set(RecorderConfig.__dataclass_fields__) - {"config_file"}
    assert fields == set(_TOML_TYPES)


def test_toml_booleans_and_numbers_pass(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("repair_journal = false\nstall_timeout_s = 5\nmetrics = 9464\n")
    assert load_toml(path) == {"repair_journal": False, "stall_timeout_s": 5, "metrics": 9464}


def test_a_non_utf8_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'venue = "sim"\n# \xff\xfe\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_toml(path)


@pytest.mark.parametrize(
    ("endpoint", "needle"),
    [
        ("ws://127.0.0.1:99999/", "not a URL"),
        ("ws://127.0.0.1:abc/", "not a URL"),
        ("ws://[::1", "not a URL"),
        ("http://127.0.0.1/", "expected a ws:// or wss:// URL"),
        ("ws:///v1/realtime", "no host"),
        ("wss://h/v1/realtime?api_key=SECRET#frag", "#fragment"),
    ],
)
def test_bad_endpoints_are_refused_without_their_query(endpoint: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)) as info:
        validate(sim_config(endpoint=endpoint), None)
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"key-one\nkey-two\n", "one key on one line"),
        (b"a b\n", "one key on one line"),
        (b"x" * 5000, "not a key"),
        (b"\xff\xfe\n", "is not text"),
        (b"\n\n", "is empty"),
    ],
)
def test_bad_api_key_files_are_refused(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=needle):
        load_api_key(sim_config(api_key_file=path))


def test_an_endless_api_key_file_is_read_bounded() -> None:
    with pytest.raises(ConfigError, match="not a key"):
        load_api_key(sim_config(api_key_file=Path("/dev/zero")))


def test_an_api_key_file_with_one_line_gives_the_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"  k3y-s3cret \n\n")
    assert load_api_key(sim_config(api_key_file=path)) == "k3y-s3cret"


def test_a_short_stall_timeout_pings_more_often() -> None:
    assert sim_config(stall_timeout_s=1.0).ping_interval_s == 0.5
    assert sim_config().ping_interval_s == defaults.PING_INTERVAL_S


def test_binance_channel_names_and_symbol_case() -> None:
    subs = parse_channel_specs(
        ["depth@100ms:btcusdt,ETHusdt", "depth:BTCUSDT", "kline_1m:btcusdt"], "binance"
    )
    assert subs == {"depth": ["BTCUSDT", "ETHUSDT"], "kline_1m": ["BTCUSDT"]}
    assert parse_channel_specs(["depth@250ms:x"], "binance-futures") == {"depth@250ms": ["X"]}
    with pytest.raises(
        ConfigError, match=r"unknown channel 'depth@250ms' .* for binance: expected"
    ):
        parse_channel_specs(["depth@250ms:BTCUSDT"], "binance")
    with pytest.raises(ConfigError, match="bad symbol 'BTC/USDT'"):
        parse_channel_specs(["trade:BTC/USDT"], "binance")
