"""The command line: ``fastfeed [run] ...``, ``sim``, ``status``, ``gaps``, ``export``, ``verify``,
``replay``, ``tail``, ``publish``.

Every expected failure (a bad flag, an unreadable path, a refused journal) ends in one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastfeed.defaults import API_KEY_ENV, DATA_DIR, SIM_HOST, SIM_PORT
from fastfeed.errors import ConfigError, FastfeedError
from fastfeed.recorder import early_signals
from fastfeed.venues import VENUES

__all__ = ["main"]

COMMANDS = ("run", "sim", "status", "gaps", "export", "verify", "replay", "tail", "publish")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem and pointing at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """--version, printed as is: argparse's own version action rewraps it to the terminal."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from fastfeed.buildinfo import version_text

        print(version_text())
        parser.exit()


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastfeed",
        description="Record a market-data WebSocket feed without losing a message.",
        epilog="With no command, `run` is assumed: fastfeed --venue sim --channels depth:AAPL.US"
        f" (TickDB needs its key in ${API_KEY_ENV} or --api-key-file)",
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="version, commit, Python tag, build date"
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="record a feed (the default command)",
        epilog=f"The TickDB API key comes from ${API_KEY_ENV} or --api-key-file, never a flag"
        " (flags show in ps); --venue sim needs none.",
    )
    run.add_argument("--venue", choices=VENUES, help="venue (default tickdb)")
    run.add_argument(
        "--endpoint",
        help="WebSocket URL (default the venue's; Binance: the base, /stream is appended)",
    )
    run.add_argument(
        "--rest-endpoint",
        metavar="URL",
        help="REST base URL for snapshots (Binance; default the venue's)",
    )
    run.add_argument(
        "--rotate-after",
        type=float,
        metavar="SECONDS",
        help="replace each connection after this long, make-before-break (Binance; default 23 h)",
    )
    run.add_argument(
        "--channels",
        action="append",
        metavar="CHANNEL:SYM[,SYM...]",
        help="what to record, e.g. depth:AAPL.US,TSLA.US (repeatable)",
    )
    run.add_argument("--data-dir", type=Path, help=f"where to keep data (default ./{DATA_DIR})")
    run.add_argument(
        "--fsync",
        choices=("group", "always", "none"),
        help="journal durability (default group: synced every 2 ms or 1 MiB)",
    )
    run.add_argument("--config", type=Path, help="TOML file with the same keys as these flags")
    run.add_argument(
        "--api-key-file", type=Path, help=f"file holding the API key (default ${API_KEY_ENV})"
    )
    run.add_argument("--ca-file", type=Path, help="extra CA bundle for wss:// verification")
    run.add_argument(
        "--stall-timeout",
        type=float,
        metavar="SECONDS",
        help="drop and replace a connection silent this long (default 10)",
    )
    run.add_argument(
        "--log-format", choices=("text", "json"), help="log line format (default text)"
    )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log level (default info)",
    )
    run.add_argument(
        "--metrics",
        metavar="[ADDR:]PORT",
        help="serve Prometheus /metrics and /healthz (ADDR defaults to 127.0.0.1)",
    )
    run.add_argument(
        "--segment-mib", type=int, metavar="MIB", help="journal segment size (default 64)"
    )
    run.add_argument(
        "--min-free-mib",
        type=int,
        metavar="MIB",
        help="stop recording rather than leave less free disk than this (default 256)",
    )
    run.add_argument(
        "--jitter-seed",
        type=int,
        metavar="N",
        help="seed the reconnect delays' jitter, so a test or chaos run reproduces exactly",
    )
    run.add_argument(
        "--publish",
        metavar="URL[,URL...]",
        help="also run `fastfeed publish` to these NATS servers ([publish] in --config for more)",
    )
    run.add_argument(
        "--repair-journal",
        action="store_true",
        default=None,
        help="truncate the journal at mid-log corruption instead of refusing to start",
    )

    sim = sub.add_parser("sim", help="run the built-in venue simulator")
    from fastfeed.sim import add_sim_arguments

    add_sim_arguments(sim)

    data_dir: dict[str, Any] = {
        "type": Path,
        "default": Path(DATA_DIR),
        "help": f"the recorder's data dir (default ./{DATA_DIR})",
    }
    for name, text in (
        ("status", "per-stream record counts, sequence ranges and open gaps"),
        ("gaps", "the gap ledger"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--data-dir", **data_dir)
        cmd.add_argument("--format", choices=("text", "json"), default="text")

    export = sub.add_parser("export", help="recorded messages as JSON lines, CSV or Parquet")
    export.add_argument("--data-dir", **data_dir)
    export.add_argument(
        "--format", choices=("jsonl", "csv", "parquet"), default="jsonl", help="default jsonl"
    )
    export.add_argument("--channel")
    export.add_argument("--symbol")
    export.add_argument(
        "--from",
        dest="from_",
        metavar="TIME",
        help="received at or after: ISO-8601 UTC, or epoch seconds, ms, µs or ns",
    )
    export.add_argument("--to", metavar="TIME", help="received before (same forms as --from)")
    export.add_argument(
        "--depth-levels",
        action="store_true",
        help="depth books flattened: one row per level (side, level, price, size)",
    )
    export.add_argument("--output", "-o", type=Path, help="file to write (default stdout)")
    export.add_argument(
        "--from-nats", metavar="URL[,URL...]", help="read the messages from a JetStream stream"
    )
    export.add_argument("--stream", default="MD", help="with --from-nats: the stream (default MD)")

    verify = sub.add_parser(
        "verify", help="check journal CRCs and LSNs, seq continuity and SQLite against the journal"
    )
    verify.add_argument("--data-dir", **data_dir)

    replay = sub.add_parser("replay", help="serve a recording over the venue's WebSocket protocol")
    replay.add_argument("--data-dir", **data_dir)
    replay.add_argument("--host", default=SIM_HOST, help=f"address to bind (default {SIM_HOST})")
    replay.add_argument(
        "--port", type=int, default=SIM_PORT, help=f"port, 0 for any free (default {SIM_PORT})"
    )
    replay.add_argument(
        "--speed", default="1.0", help="factor of recorded time (default 1.0), or max"
    )

    tail = sub.add_parser("tail", help="follow new messages as the recorder journals them")
    tail.add_argument("--data-dir", **data_dir)
    tail.add_argument("--channel")
    tail.add_argument("--symbol")
    tail.add_argument("--format", choices=("text", "json"), default="text")
    tail.add_argument(
        "--from-start", action="store_true", help="print the whole journal first (default: end)"
    )
    from fastfeed.publish.args import add_publish_arguments

    add_publish_arguments(sub.add_parser("publish", help="publish the journal into NATS JetStream"))
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """Prefix ``run`` when the arguments start with a flag; refuse a mistyped command word."""
    if not argv or argv[0] in (*COMMANDS, "-h", "--help", "--version"):
        return argv
    if not argv[0].startswith("-"):
        # `run` takes no positional argument, so a bare word here can only be a command.
        raise ConfigError(
            f"unknown command {argv[0][:40]!r}: expected one of {', '.join(COMMANDS)}"
        )
    return ["run", *argv]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fastfeed`` and ``python -m fastfeed``; returns the exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    early_signals.install()  # until the command's modules are imported: see early_signals
    try:
        code = _dispatch(raw)
        sys.stdout.flush()  # here, not at exit: a full disk or closed pipe is reported below
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as exc:
        if exc.errno not in (errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise
        # The output could not be written (`> /dev/full`, a full disk, `| head`). Point stdout
        # at /dev/null so the interpreter's own flush at exit does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if exc.errno != errno.EPIPE:  # a reader that went away is not an error worth a line
            print(f"fastfeed: cannot write the output: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if argv is None and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            # The command is over and the process exits: a Ctrl-C now could only land in the
            # interpreter's own shutdown (threading, atexit) and print a traceback from there.
            # (`run` leaves its own handler, which stops or exits 130, and keeps it.)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


def _dispatch(raw: list[str]) -> int:
    try:
        args = _build_parser().parse_args(_with_default_command(raw))
    except ConfigError as exc:
        print(f"fastfeed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        command = _load("export-nats" if getattr(args, "from_nats", None) else args.command)
        if args.command not in ("run", "publish") and early_signals.release():
            return EXIT_INTERRUPTED  # a stop signal came while the command was loading
        return command(args)
    except ConfigError as exc:
        print(f"fastfeed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FastfeedError as exc:
        print(f"fastfeed: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _load(command: str | None) -> Callable[[argparse.Namespace], int]:
    """Import the module of ``command`` (only then: each loads different dependencies)."""
    if command == "run":
        # `run` keeps the early handlers: the recorder hands their signals to its event loop.
        from fastfeed.recorder.app import run_from_args

        return run_from_args
    if command == "sim":
        from fastfeed.sim import main_sim

        return main_sim
    if command in ("status", "gaps", "export"):
        from fastfeed.tools import reports

        return reports.main
    if command == "verify":
        from fastfeed.tools import verify

        return verify.main
    if command == "tail":
        from fastfeed.tools import tail

        return tail.main
    if command == "replay":
        from fastfeed.tools.replay import main_replay

        return main_replay
    if command == "publish":
        from fastfeed.publish.app import main as main_publish

        return main_publish
    if command == "export-nats":
        from fastfeed.publish.nats_export import main as export_from_nats

        return export_from_nats

    def usage(_: argparse.Namespace) -> int:
        _build_parser().print_help()
        return EXIT_USAGE

    return usage
