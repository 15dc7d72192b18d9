"""The recorder's settings: command line and TOML merged, validated, the API key kept apart."""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from fastfeed import defaults
from fastfeed.errors import ConfigError
from fastfeed.journal import FsyncMode, segment_bytes_for
from fastfeed.venues import VENUES, adapter_for
from fastfeed.venues.base import ShardVenue
from fastfeed.venues.tickdb import CHANNELS, validate_symbol

__all__ = [
    "DEFAULT_ENDPOINT",
    "RecorderConfig",
    "Subscriptions",
    "config_from_args",
    "endpoint_problem",
    "load_api_key",
    "load_toml",
    "parse_channel_specs",
    "validate",
]

DEFAULT_ENDPOINT = "wss://api.tickdb.ai/v1/realtime"
MAX_SEGMENT_MIB = 4095  # the journal's segment offsets are 32-bit
MAX_API_KEY_BYTES = 4096  # a key file larger than this is not a key (or is /dev/zero)

Subscriptions = dict[str, list[str]]  # channel -> symbols, in the order first given


@dataclass(slots=True)
class RecorderConfig:
    """Everything `fastfeed run` needs. The API key is not a field on purpose: load_api_key."""

    venue: str = "tickdb"
    endpoint: str = DEFAULT_ENDPOINT
    channels: Subscriptions = field(default_factory=dict)
    data_dir: Path = Path(defaults.DATA_DIR)
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
    rest_endpoint: str | None = None  # venues with REST snapshots: base URL (None: the venue's)
    rotate_after_s: float = defaults.ROTATE_AFTER_S  # venues that close connections (Binance)
    jitter_seed: int | None = None  # seeds the reconnect jitter: a run reproduces exactly
    publish: dict[str, Any] | None = None  # [publish] / --publish: fastfeed/publish/child.py

    @property
    def ping_interval_s(self) -> float:
        """How often to ping: a quiet feed answers only our pings, so at least twice per stall
        timeout, or a short ``--stall-timeout`` would drop every quiet, healthy connection."""
        return min(defaults.PING_INTERVAL_S, self.stall_timeout_s / 2)


def parse_channel_specs(specs: list[str], venue: str = "tickdb") -> Subscriptions:
    """Turn ``["depth:AAPL.US,TSLA.US", "trade:BTC.CC"]`` into ``{"depth": [...], ...}``.

    Binance venues take their own channel names (``depth@100ms`` is recorded as ``depth``)
    and symbols in any case (recorded upper case), and split streams across connections.

    Raises:
        ConfigError: a spec without ``:``, an unknown channel, an invalid symbol, or more
            than MAX_STREAMS_PER_CONNECTION streams in all (TickDB: one connection).
    """
    adapter = adapter_for(venue) if venue in VENUES else None
    if adapter is not None and not adapter.replays:
        return _venue_specs(specs, cast(ShardVenue, adapter))
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


def _venue_specs(specs: list[str], adapter: ShardVenue) -> Subscriptions:
    subs: Subscriptions = {}
    for spec in specs:
        name, sep, rest = spec.partition(":")
        if not sep or not rest.strip():
            raise ConfigError(f"bad channel spec {spec!r}: expected CHANNEL:SYM[,SYM...]")
        channel = adapter.channel(name.strip())
        if channel is None:
            raise ConfigError(
                f"unknown channel {name.strip()!r} in {spec!r} for {adapter.name}: expected"
                f" one of {adapter.channels_help()}"
            )
        symbols = subs.setdefault(channel, [])
        for raw in rest.split(","):
            problem = adapter.symbol_problem(raw.strip())
            if problem:
                raise ConfigError(f"bad symbol {raw.strip()!r} in {spec!r}: {problem}")
            symbol = raw.strip().upper()
            if symbol not in symbols:
                symbols.append(symbol)
    return subs


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one_of(*choices: str) -> Callable[[object], bool]:
    return lambda value: value in choices


# What each TOML key may hold, said in the error. Ranges are checked once, by ``validate``, for
# flags and file alike; here only the type (and fixed choices), so `repair_journal = "no"` can
# never read as true and `data_dir = {a=1}` never becomes a path named "{'a': 1}".
_TOML_TYPES: dict[str, tuple[Callable[[object], bool], str]] = {
    "venue": (_is_str, "a string"),
    "endpoint": (_is_str, "a ws:// or wss:// URL string"),
    "channels": (
        lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        'a list of "CHANNEL:SYM[,SYM...]" strings',
    ),
    "data_dir": (_is_str, "a path string"),
    "fsync": (_one_of("group", "always", "none"), '"group", "always" or "none"'),
    "api_key_file": (_is_str, "a path string"),
    "ca_file": (_is_str, "a path string"),
    "stall_timeout_s": (_is_number, "a number of seconds"),
    "log_format": (_one_of("text", "json"), '"text" or "json"'),
    "log_level": (
        _one_of("debug", "info", "warning", "error"),
        '"debug", "info", "warning" or "error"',
    ),
    "repair_journal": (lambda v: isinstance(v, bool), "true or false"),
    "metrics": (lambda v: _is_str(v) or _is_int(v), 'a port number or "ADDR:PORT"'),
    "segment_mib": (_is_int, "a whole number of MiB"),
    "min_free_mib": (_is_int, "a whole number of MiB"),
    "rest_endpoint": (_is_str, "an http:// or https:// URL string"),
    "rotate_after_s": (_is_number, "a number of seconds"),
    "jitter_seed": (_is_int, "a whole number"),
    "publish": (lambda v: isinstance(v, dict), "a table (docs/scale-out.md)"),
}


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config with the same keys as the flags (``data-dir`` or ``data_dir``).

    Raises:
        ConfigError: unreadable, not UTF-8, not TOML, an unknown key, or a value of the wrong type.
    """
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _TOML_TYPES:
            raise ConfigError(f"config {path}: unknown key {key!r}")
        check, expected = _TOML_TYPES[name]
        if not check(value):
            shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
            raise ConfigError(f"config {path}: {key} must be {expected}, got {shown}")
        out[name] = value
    return out


def load_api_key(config: RecorderConfig) -> str | None:
    """The key from ``--api-key-file`` or ``$TICKDB_API_KEY`` (never a flag: flags show in ps)."""
    if config.api_key_file is not None:
        path = config.api_key_file
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_API_KEY_BYTES + 1)  # bounded: the file may be endless
        except OSError as exc:
            raise ConfigError(f"cannot read API key file {path}: {exc.strerror}") from None
        if len(data) > MAX_API_KEY_BYTES:
            raise ConfigError(f"API key file {path} is over {MAX_API_KEY_BYTES} bytes: not a key")
        try:
            lines = [line.strip() for line in data.decode().splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise ConfigError(f"API key file {path} is not text") from None
        if not lines:
            raise ConfigError(f"API key file {path} is empty")
        if len(lines) > 1 or any(c.isspace() or not c.isprintable() for c in lines[0]):
            raise ConfigError(f"API key file {path} must hold one key on one line")
        return lines[0]
    return os.environ.get(defaults.API_KEY_ENV) or None


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` is not a usable ws:// or wss:// URL, or None. Never echoes a secret."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port  # raises ValueError for a port that is not a number in 0..65535
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("ws", "wss"):
        return "expected a ws:// or wss:// URL"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    if parts.fragment or endpoint.endswith("#"):
        return "a #fragment is not sent to the server; remove it"
    return None


def validate(config: RecorderConfig, api_key: str | None) -> None:
    """Refuse a configuration that cannot record, with one line saying what to change."""
    if config.venue not in VENUES:
        raise ConfigError(f"unknown venue {config.venue!r}: expected one of {', '.join(VENUES)}")
    if not config.channels:
        raise ConfigError("nothing to record: give at least one --channels CHANNEL:SYM[,SYM...]")
    if not 1 <= config.rotate_after_s <= 86_400:
        raise ConfigError(f"rotation period {config.rotate_after_s} s is outside 1..86400")
    if config.rest_endpoint is not None:
        parts = urlsplit(config.rest_endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("bad REST endpoint: expected an http:// or https:// base URL")
    if config.venue == "tickdb" and api_key is None:
        raise ConfigError(
            f"no API key: set {defaults.API_KEY_ENV} or pass --api-key-file FILE "
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
    problem = endpoint_problem(config.endpoint)
    if problem is not None:
        # Shown without its query, userinfo or fragment: those are where a key could sit.
        head = config.endpoint.split("?", 1)[0].split("#", 1)[0]
        scheme, sep, rest = head.partition("://")
        shown = f"{scheme}{sep}{rest.rpartition('@')[2]}"[:80]
        raise ConfigError(f"bad endpoint {shown!r}: {problem}")


def config_from_args(args: argparse.Namespace) -> RecorderConfig:
    """Merge defaults < TOML file < flags into one validated-shape config."""
    values: dict[str, object] = {}
    if args.config is not None:
        values.update(load_toml(args.config))
    if args.stall_timeout is not None:
        values["stall_timeout_s"] = args.stall_timeout
    if getattr(args, "rotate_after", None) is not None:
        values["rotate_after_s"] = args.rotate_after
    for name in (
        "venue",
        "endpoint",
        "data_dir",
        "fsync",
        "api_key_file",
        "ca_file",
        "log_format",
        "log_level",
        "metrics",
        "repair_journal",
        "segment_mib",
        "min_free_mib",
        "rest_endpoint",
        "jitter_seed",
    ):
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = flag
    if getattr(args, "publish", None) is not None:  # --publish URLS: the [publish] table's nats
        table = values.get("publish")
        values["publish"] = {**(table if isinstance(table, dict) else {}), "nats": args.publish}
    specs = args.channels if args.channels else values.pop("channels", [])
    values.pop("channels", None)
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise ConfigError('config: "channels" must be a list of "CHANNEL:SYM[,SYM...]" strings')
    venue = str(values.get("venue", "tickdb"))
    config = RecorderConfig(channels=parse_channel_specs(specs, venue), config_file=args.config)
    adapter = adapter_for(venue) if venue in VENUES else None
    shard = cast(ShardVenue, adapter) if adapter is not None and not adapter.replays else None
    if adapter is not None and not adapter.replays and "endpoint" not in values:
        config.endpoint = cast(ShardVenue, adapter).default_ws_base()
    # A setting the venue never reads would be ignored without a word: say so instead.
    if "rest_endpoint" in values and not (shard is not None and shard.rest_snapshots):
        raise ConfigError(f"--rest-endpoint does not apply to --venue {venue}: no REST snapshots")
    if "rotate_after_s" in values and not (shard is not None and shard.rotates):
        raise ConfigError(f"--rotate-after does not apply to --venue {venue}: it never rotates")
    for name, value in values.items():
        if name in ("data_dir", "api_key_file", "ca_file"):
            value = Path(str(value))
        elif name == "metrics":
            value = str(value)  # TOML `metrics = 9464` is an int
        elif name == "fsync":
            try:
                value = FsyncMode(str(value))
            except ValueError:
                raise ConfigError(
                    f"bad fsync mode {value!r}: expected group, always or none"
                ) from None
        setattr(config, name, value)
    return config
