"""The simulator's settings and the command-line options that build them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from fastfeed.defaults import (
    MAX_FRAME_BYTES,
    SIM_COMMANDS_PER_S,
    SIM_DEPTH_LEVELS,
    SIM_HISTORY_BYTES,
    SIM_HISTORY_MESSAGES,
    SIM_HOST,
    SIM_MAX_CLIENT_BUFFER,
    SIM_PORT,
    SIM_RATE_PER_STREAM,
    SIM_SEED,
)
from fastfeed.errors import ConfigError
from fastfeed.sim.faults import GARBAGE_KINDS, FaultPlan
from fastfeed.venues.tickdb import CHANNELS, CODE_RATE_LIMITED, CODE_UNKNOWN_NAME

__all__ = ["SimConfig", "add_sim_arguments", "sim_config_from_args"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Every simulator knob. ``streams`` are started with the server; others on first subscribe."""

    seed: int = SIM_SEED
    rate: float = SIM_RATE_PER_STREAM  # msgs/s per stream (ignored in burst mode)
    burst: bool = False  # publish as fast as each subscriber's socket takes
    history_messages: int = SIM_HISTORY_MESSAGES  # per stream
    history_bytes: int = SIM_HISTORY_BYTES  # all streams together
    depth_levels: int = SIM_DEPTH_LEVELS
    plain_tickdb: bool = False  # no seq, no ack streams, no resume
    api_key: str | None = None  # None accepts any key (or none)
    deflate: bool = False  # accept permessage-deflate offers
    stamp_send_time: bool = False  # add "sent_ns" (monotonic ns) to pushes: not replay-exact
    max_client_buffer: int = SIM_MAX_CLIENT_BUFFER  # bytes a client may lag before it is dropped
    max_frame_bytes: int = MAX_FRAME_BYTES  # largest client frame accepted
    commands_per_s: float = (
        SIM_COMMANDS_PER_S  # client commands per second before the rate-limit error
    )
    streams: tuple[tuple[str, str], ...] = ()  # (channel, symbol) published from server start
    start_seq: int = 1  # first seq of every stream: > 1 is a restarted venue, history lost
    # (channel, symbol, next seq): streams that continue a recording's numbering (`run --venue
    # sim` restarted), so a restart of the recorder is not a venue restart.
    resume_at: tuple[tuple[str, str, int], ...] = ()
    faults: FaultPlan = field(default_factory=FaultPlan)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ConfigError(f"rate must be positive, got {self.rate}")
        if self.start_seq < 1:
            raise ConfigError(f"start seq must be at least 1, got {self.start_seq}")
        if self.history_messages < 1 or self.history_bytes < 1:
            raise ConfigError("history caps must be positive")
        if not 1 <= self.depth_levels <= 50:
            raise ConfigError(f"depth levels must be within 1..50, got {self.depth_levels}")
        for channel, _ in self.streams:
            if channel not in CHANNELS:
                raise ConfigError(f"unknown channel {channel!r}", hint="use depth, trade, ticker")


def _streams(text: str) -> list[tuple[str, str]]:
    """``depth:AAPL.US,TSLA.US`` -> [("depth", "AAPL.US"), ("depth", "TSLA.US")]."""
    channel, sep, symbols = text.partition(":")
    if not sep or channel not in CHANNELS or not symbols:
        raise argparse.ArgumentTypeError(f"expected CHANNEL:SYM[,SYM...], got {text!r}")
    return [(channel, s) for s in symbols.split(",") if s]


def _oversize_push(text: str) -> tuple[str, str, int]:
    """``depth:AAPL.US:500`` -> ("depth", "AAPL.US", 500)."""
    head, _, seq = text.rpartition(":")
    channel, sep, symbol = head.partition(":")
    if not sep or channel not in CHANNELS or not symbol or not seq.isdigit() or int(seq) < 1:
        raise argparse.ArgumentTypeError(f"expected CHANNEL:SYM:SEQ (SEQ >= 1), got {text!r}")
    return channel, symbol, int(seq)


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every simulator option (server, content, faults) to ``parser``."""
    add = parser.add_argument
    add("--host", default=SIM_HOST, help=f"address to bind (default {SIM_HOST})")
    add("--port", type=int, default=SIM_PORT, help=f"port, 0 for any free (default {SIM_PORT})")
    add("--seed", type=int, default=SIM_SEED, help="content seed")
    add("--rate", type=float, default=SIM_RATE_PER_STREAM, help="messages/s per stream")
    add("--burst", action="store_true", help="send as fast as each socket takes (benchmarks)")
    add("--history-messages", type=int, default=SIM_HISTORY_MESSAGES, help="per stream")
    add("--history-bytes", type=int, default=SIM_HISTORY_BYTES, help="all streams together")
    add("--depth-levels", type=int, default=SIM_DEPTH_LEVELS, help="book levels per depth push")
    add("--plain-tickdb", action="store_true", help="no seq, no ack streams, no resume")
    add("--api-key", help="the only key accepted (default: any)")
    add("--deflate", action="store_true", help="accept permessage-deflate")
    add("--stamp-send-time", action="store_true", help='add "sent_ns" to every push')
    add("--max-client-buffer", type=int, default=SIM_MAX_CLIENT_BUFFER, help="bytes")
    add(
        "--commands-per-s",
        type=float,
        default=SIM_COMMANDS_PER_S,
        help=f"before error {CODE_RATE_LIMITED}",
    )
    add(
        "--stream",
        type=_streams,
        action="append",
        default=[],
        metavar="CHANNEL:SYM[,SYM]",
        help="publish this stream from server start (repeatable)",
    )
    add(
        "--start-seq",
        type=int,
        default=1,
        metavar="SEQ",
        help="number every stream from SEQ, nothing older held (a venue restart)",
    )
    faults = parser.add_argument_group("faults (seeded, reproducible)")
    fadd = faults.add_argument
    fadd("--fault-seed", type=int, default=SIM_SEED)
    fadd("--fault-connections", type=int, help="apply frame faults to the first N connections")
    fadd("--fault-abort-after", type=int, metavar="N", help="drop TCP after N push frames")
    fadd("--fault-close-after", type=int, metavar="N", help="close frame after N push frames")
    fadd("--fault-skip-rate", type=float, default=0.0, help="fraction of seqs never sent")
    fadd("--fault-duplicate-rate", type=float, default=0.0, help="fraction of frames sent twice")
    fadd("--fault-reorder-rate", type=float, default=0.0, help="fraction swapped with the next")
    fadd("--fault-garbage-rate", type=float, default=0.0, help="fraction preceded by garbage")
    fadd("--fault-garbage-kinds", default=",".join(GARBAGE_KINDS), help="comma separated")
    fadd("--fault-oversize-bytes", type=int, default=MAX_FRAME_BYTES + 1)
    fadd(
        "--fault-oversize-push",
        type=_oversize_push,
        action="append",
        default=[],
        metavar="CHANNEL:SYM:SEQ",
        help="send that push padded to --fault-oversize-bytes, every time (repeatable)",
    )
    fadd("--fault-stall-after", type=int, metavar="N", help="stall after N push frames ...")
    fadd("--fault-stall-seconds", type=float, default=0.0, help="... for S seconds")
    fadd("--fault-reject-symbols", default="", help="comma separated symbols to refuse")
    fadd("--fault-reject-code", type=int, default=CODE_UNKNOWN_NAME)
    fadd("--fault-refuse-connections", type=int, default=0, help="first N attempts get 503")
    fadd("--fault-refuse-seconds", type=float, default=0.0, help="attempts in first S s get 503")


def sim_config_from_args(ns: argparse.Namespace) -> SimConfig:
    """Build a :class:`SimConfig` from options added by :func:`add_sim_arguments`."""
    try:
        plan = FaultPlan(
            seed=ns.fault_seed,
            connections=ns.fault_connections,
            abort_after=ns.fault_abort_after,
            close_after=ns.fault_close_after,
            skip_rate=ns.fault_skip_rate,
            duplicate_rate=ns.fault_duplicate_rate,
            reorder_rate=ns.fault_reorder_rate,
            garbage_rate=ns.fault_garbage_rate,
            garbage_kinds=tuple(k for k in ns.fault_garbage_kinds.split(",") if k),
            oversize_bytes=ns.fault_oversize_bytes,
            oversize_pushes=tuple(ns.fault_oversize_push),
            stall_after=ns.fault_stall_after,
            stall_s=ns.fault_stall_seconds,
            reject_symbols=frozenset(s for s in ns.fault_reject_symbols.split(",") if s),
            reject_code=ns.fault_reject_code,
            refuse_connections=ns.fault_refuse_connections,
            refuse_s=ns.fault_refuse_seconds,
        )
    except ValueError as exc:
        raise ConfigError(f"bad fault option: {exc}") from exc
    return SimConfig(
        seed=ns.seed,
        rate=ns.rate,
        burst=ns.burst,
        history_messages=ns.history_messages,
        history_bytes=ns.history_bytes,
        depth_levels=ns.depth_levels,
        plain_tickdb=ns.plain_tickdb,
        api_key=ns.api_key,
        deflate=ns.deflate,
        stamp_send_time=ns.stamp_send_time,
        max_client_buffer=ns.max_client_buffer,
        commands_per_s=ns.commands_per_s,
        streams=tuple(pair for group in ns.stream for pair in group),
        start_seq=ns.start_seq,
        faults=plan,
    )
