"""`status`, `gaps` and `export`: read-only views of a data dir, safe beside a running recorder.

They write nothing in the data dir and take no lock: SQLite is read as it is and the journal
records past it are derived in memory (fastfeed/catchup.py), so the answer includes everything
journaled, on a stopped recorder's dir, beside a live one, or on a read-only copy. The export
formats themselves live in fastfeed/tools/export.py.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from fastfeed.catchup import open_view
from fastfeed.datadir import STORE_FILE, open_data_dir
from fastfeed.errors import StoreError
from fastfeed.tools.export import export, filter_from_args

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Run one of the read-only commands; returns the exit code."""
    data_dir = open_data_dir(args.data_dir)
    if args.command == "export":
        filter_from_args(args)  # a bad --from/--to fails before any work
    view = open_view(data_dir, messages=args.command == "export")
    try:
        for note in view.notes:
            print(f"fastfeed: {note}", file=sys.stderr)
        out = sys.stdout
        store, pending = view.store, view.pending
        if args.command == "status":
            status = store.status(pending)
            # The journal LSN the answer reaches: SQLite's applied LSN, or what was derived past it.
            status["journal_lsn"] = (
                status["applied_lsn"] if pending is None else pending.applied_lsn
            )
            out.write(_json(status) if args.format == "json" else _status_text(status))
        elif args.command == "gaps":
            gaps = store.gaps(pending)
            out.write(_json(gaps) if args.format == "json" else _gaps_text(gaps))
        else:
            export(args, store, pending)
        out.flush()
        if store.changed():
            raise StoreError(
                f"{data_dir / STORE_FILE} was written while it was read (a recorder started?):"
                " the answer may be inconsistent",
                hint="run the command again",
            )
    except BrokenPipeError:  # `fastfeed export | head`: the reader left; not an error
        sys.stderr.close()
    finally:
        view.close()
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
    oversized = status["counters"].get("oversized", 0)
    if oversized:
        lines.append(f"frames over the size limit skipped: {oversized} (their seqs: `gaps`)")
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
