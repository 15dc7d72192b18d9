"""`fastfeed tail`: print each new message of a data dir as the recorder journals it.

Read-only and lock-free: records come from :func:`fastfeed.journal.read_journal` (no writer lock,
so a recorder can always start or restart beside it) and go through the recorder's own
:class:`~fastfeed.derive.pipeline.Pipeline`, so a line is exactly a row ``export`` will show:
duplicates dropped, the same fields and JSON shape, less ``epoch`` (tail starts mid-journal,
where it cannot know how many venue restarts came before).

What "durable" means here: the writer's durable LSN lives in its memory, not on disk, so tail
prints records once they are *accepted*, i.e. complete and CRC-valid in the shared journal
mapping. Those survive a recorder crash or ``kill -9``; in ``--fsync group`` mode they become
durable against power loss within GROUP_COMMIT_MS.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO

from fastfeed import defaults
from fastfeed.catchup import venue_of
from fastfeed.datadir import JOURNAL_DIR, STORE_FILE, open_data_dir
from fastfeed.derive.pipeline import Pipeline
from fastfeed.errors import ConfigError
from fastfeed.journal import Damage, JournalReader, end_of_log, read_journal
from fastfeed.logs import setup_logging
from fastfeed.store import MessageRow, Store
from fastfeed.tools.export import export_lines
from fastfeed.venues import adapter_for

__all__ = ["main"]

log = logging.getLogger("fastfeed.tools.tail")


def main(args: argparse.Namespace) -> int:
    """Follow until SIGINT, SIGTERM or a closed stdout; returns the exit code (0)."""
    setup_logging("text", "warning")
    journal_dir = open_data_dir(args.data_dir) / JOURNAL_DIR
    if not journal_dir.is_dir():
        raise ConfigError(f"no journal in {args.data_dir} yet: start the recorder first")
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only a flag: a handler that takes a lock (threading.Event.set did) deadlocks when
        # the signal lands while this same thread holds that lock inside Event.wait.
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    venue = _venue(args.data_dir)
    pipeline = Pipeline(venue, adapter_for(venue))
    out = sys.stdout.buffer
    next_lsn = 1 if args.from_start else end_of_log(journal_dir).last_lsn + 1
    reported: Damage | None = None
    reader: JournalReader | None = None  # one for as long as the log goes on
    try:
        while not stopping:
            if reader is None:
                reader = read_journal(journal_dir, next_lsn)
            for record in reader:
                if record.lsn != next_lsn:
                    log.warning(
                        "journal records %d..%d were deleted (retention) before tail read them",
                        next_lsn,
                        record.lsn - 1,
                    )
                next_lsn = record.lsn + 1
                pipeline.feed(
                    record.lsn,
                    record.kind,
                    record.recv_ns,
                    record.payload,
                    record.flags,
                    record.stream,
                )
                if record.lsn % defaults.TAIL_CUT_EVERY_RECORDS == 0:
                    _print(out, pipeline, args)
                    if stopping:
                        break
            _print(out, pipeline, args)
            damage = reader.damage
            if damage is not None:
                # A reader stays stopped at damage: the next one starts past it, or where a
                # recorder's recovery leaves the log.
                reader.close()
                reader = None
            if damage is not None and damage != reported:
                reported = damage
                if damage.resumes_at is not None and damage.resumes_at > damage.after_lsn:
                    log.warning(
                        "journal damaged: %s; skipping to LSN %d", damage, damage.resumes_at
                    )
                    next_lsn = damage.resumes_at
                    continue
                log.warning(
                    "journal damaged: %s; waiting at LSN %d for a recorder to recover it",
                    damage,
                    damage.after_lsn,
                )
            time.sleep(defaults.TAIL_POLL_S)  # a signal sets the flag; the loop then ends
    except BrokenPipeError:
        # `fastfeed tail | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not fail again (Python's documented remedy).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        if reader is not None:
            reader.close()
    return 0


def _print(out: IO[bytes], pipeline: Pipeline, args: argparse.Namespace) -> None:
    """Write the messages derived since the last call that pass the filters, one flush each."""
    batch = pipeline.cut()
    if batch is None:
        return
    for row in batch.messages:
        if (args.channel is None or row.channel == args.channel) and (
            args.symbol is None or row.symbol == args.symbol
        ):
            line = (
                next(iter(export_lines([row], epoch=False, kind=False)))
                if args.format == "json"
                else _text(row)
            )
            out.write(line)
            out.flush()


def _text(row: MessageRow) -> bytes:
    """``<UTC receive time> CHANNEL:SYMBOL seq N <frame>`` (binary frames as b64:...)."""
    when = datetime.fromtimestamp(row.recv_ns // 1000 / 1e6, UTC).isoformat(timespec="microseconds")
    seq = "-" if row.seq is None else row.seq
    frame = b"b64:" + base64.b64encode(row.frame) if row.binary else row.frame.replace(b"\n", b" ")
    head = f"{when.replace('+00:00', 'Z')} {row.channel}:{row.symbol} seq {seq} ".encode()
    return head + frame + b"\n"


def _venue(data_dir: Path) -> str:
    """The venue the data dir records (SQLite's label, else the journal's)."""
    db = data_dir / STORE_FILE
    store = Store.open(db, readonly=True) if db.exists() else Store.empty()
    try:
        return venue_of(store, data_dir / JOURNAL_DIR)
    finally:
        store.close()
