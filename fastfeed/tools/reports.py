"""`status`, `gaps` and `export`: read-only views of a data dir, safe beside a running recorder.

The export formats themselves live in fastfeed/tools/export.py.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from fastfeed.catchup import catch_up
from fastfeed.datadir import open_data_dir
from fastfeed.store import Store
from fastfeed.tools.export import export, filter_from_args

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Run one of the read-only commands; returns the exit code."""
    data_dir = open_data_dir(args.data_dir)
    if args.command == "export":
        filter_from_args(args)  # a bad --from/--to fails before any work
    catch_up(data_dir)  # a no-op while a recorder holds the journal (it keeps SQLite current)
    store = Store.open(data_dir / "fastfeed.db", readonly=True)
    try:
        out = sys.stdout
        if args.command == "status":
            status = store.status()
            out.write(_json(status) if args.format == "json" else _status_text(status))
        elif args.command == "gaps":
            gaps = store.gaps()
            out.write(_json(gaps) if args.format == "json" else _gaps_text(gaps))
        else:
            export(args, store)
        out.flush()
    except BrokenPipeError:  # `fastfeed export | head`: the reader left; not an error
        sys.stderr.close()
    finally:
        store.close()
    return 0


def _json(doc: object) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def _status_text(status: dict[str, Any]) -> str:
    lines = [f"{'stream':<28} {'records':>10} {'first_seq':>10} {'last_seq':>10} {'gaps':>5}"]
    for s in status["streams"]:
        name = f"{s['venue']}/{s['channel']}:{s['symbol']}"
        lines.append(
            f"{name:<28} {s['records']:>10} {_dash(s['first_seq']):>10}"
            f" {_dash(s['last_seq']):>10} {s['gaps_open']:>5}"
        )
    lines.append(f"gaps open: {status['gaps_open']}, lost: {status['gaps_lost']}")
    return "\n".join(lines) + "\n"


def _gaps_text(gaps: list[dict[str, Any]]) -> str:
    if not gaps:
        return "no gaps\n"
    lines = []
    for g in gaps:
        where = (
            f"seq {g['from_seq']}..{g['to_seq']}"
            if g["from_seq"] is not None
            else f"ns {g['from_ns']}..{_dash(g['to_ns'])}"
        )
        lines.append(
            f"{g['state']:<6} {g['venue']}/{g['channel']}:{g['symbol']} {where} ({g['reason']})"
        )
    return "\n".join(lines) + "\n"


def _dash(value: object) -> str:
    return "-" if value is None else str(value)
