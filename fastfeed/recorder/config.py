"""The recorder's settings: command line and TOML merged, validated, the API key kept apart."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastfeed import defaults
from fastfeed.errors import ConfigError
from fastfeed.journal import FsyncMode, segment_bytes_for
from fastfeed.venues.tickdb import CHANNELS, validate_symbol

__all__ = [
    "DEFAULT_ENDPOINT",
    "RecorderConfig",
    "Subscriptions",
    "load_api_key",
    "load_toml",
    "parse_channel_specs",
    "validate",
]

DEFAULT_ENDPOINT = "wss://api.tickdb.ai/v1/realtime"
API_KEY_ENV = "TICKDB_API_KEY"
VENUES = ("tickdb", "sim")
MAX_SEGMENT_MIB = 4095  # the journal's segment offsets are 32-bit

Subscriptions = dict[str, list[str]]  # channel -> symbols, in the order first given


@dataclass(slots=True)
class RecorderConfig:
    """Everything `fastfeed run` needs. The API key is not a field on purpose: load_api_key."""

    venue: str = "tickdb"
    endpoint: str = DEFAULT_ENDPOINT
    channels: Subscriptions = field(default_factory=dict)
    data_dir: Path = Path("fastfeed-data")
    fsync: FsyncMode = FsyncMode.GROUP
    api_key_file: Path | None = None
    ca_file: Path | None = None
    config_file: Path | None = None
    stall_timeout_s: float = defaults.STALL_TIMEOUT_S
    log_format: str = "text"
    log_level: str = "info"
    repair_journal: bool = False
    metrics: str | None = None  # "PORT" or "ADDR:PORT" for /metrics and /healthz
    segment_mib: int = defaults.SEGMENT_BYTES // defaults.MiB
    min_free_mib: int = defaults.MIN_FREE_BYTES // defaults.MiB


def parse_channel_specs(specs: list[str]) -> Subscriptions:
    """Turn ``["depth:AAPL.US,TSLA.US", "trade:BTC.CC"]`` into ``{"depth": [...], ...}``.

    Raises:
        ConfigError: a spec without ``:``, an unknown channel, an invalid symbol, or more
            than MAX_STREAMS_PER_CONNECTION streams in all.
    """
    subs: Subscriptions = {}
    for spec in specs:
        channel, sep, rest = spec.partition(":")
        channel = channel.strip()
        if not sep or not rest.strip():
            raise ConfigError(f"bad channel spec {spec!r}: expected CHANNEL:SYM[,SYM...]")
        if channel not in CHANNELS:
            raise ConfigError(
                f"unknown channel {channel!r} in {spec!r}: expected one of {', '.join(CHANNELS)}"
            )
        symbols = subs.setdefault(channel, [])
        for raw in rest.split(","):
            symbol = raw.strip()
            problem = validate_symbol(symbol)
            if problem:
                raise ConfigError(f"bad symbol {symbol!r} in {spec!r}: {problem}")
            if symbol not in symbols:
                symbols.append(symbol)
    streams = sum(len(symbols) for symbols in subs.values())
    if streams > defaults.MAX_STREAMS_PER_CONNECTION:
        raise ConfigError(
            f"{streams} streams requested; one connection carries at most"
            f" {defaults.MAX_STREAMS_PER_CONNECTION}"
        )
    return subs


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config with the same keys as the flags (``data-dir`` or ``data_dir``)."""
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    known = {f for f in RecorderConfig.__dataclass_fields__ if f != "config_file"}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"config {path}: unknown key {key!r}")
        out[name] = value
    return out


def load_api_key(config: RecorderConfig) -> str | None:
    """The key from ``--api-key-file`` or ``$TICKDB_API_KEY`` (never a flag: flags show in ps)."""
    if config.api_key_file is not None:
        try:
            key = config.api_key_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read API key file {config.api_key_file}: {exc.strerror}"
            ) from None
        if not key:
            raise ConfigError(f"API key file {config.api_key_file} is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


def validate(config: RecorderConfig, api_key: str | None) -> None:
    """Refuse a configuration that cannot record, with one line saying what to change."""
    if config.venue not in VENUES:
        raise ConfigError(f"unknown venue {config.venue!r}: expected one of {', '.join(VENUES)}")
    if not config.channels:
        raise ConfigError("nothing to record: give at least one --channels CHANNEL:SYM[,SYM...]")
    if config.venue == "tickdb" and api_key is None:
        raise ConfigError(
            f"no API key: set {API_KEY_ENV} or pass --api-key-file FILE "
            "(or use --venue sim, which runs without one)"
        )
    if not 0.5 <= config.stall_timeout_s <= 3600:
        raise ConfigError(f"stall timeout {config.stall_timeout_s} s is outside 0.5..3600")
    if not (isinstance(config.segment_mib, int) and 1 <= config.segment_mib <= MAX_SEGMENT_MIB):
        raise ConfigError(
            f"segment size {config.segment_mib!r} MiB is outside 1..{MAX_SEGMENT_MIB}"
        )
    least = -(-segment_bytes_for(defaults.MAX_FRAME_BYTES) // defaults.MiB)  # rounded up
    if config.segment_mib < least:
        raise ConfigError(
            f"segment size {config.segment_mib} MiB cannot hold the largest frame accepted"
            f" ({defaults.MAX_FRAME_BYTES} bytes): give --segment-mib {least} or more"
        )
    if not (isinstance(config.min_free_mib, int) and config.min_free_mib >= 0):
        raise ConfigError(f"minimum free space {config.min_free_mib!r} MiB must be 0 or more")
    if not config.endpoint.startswith(("ws://", "wss://")):
        raise ConfigError(f"bad endpoint {config.endpoint!r}: expected a ws:// or wss:// URL")
