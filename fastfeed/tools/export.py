"""``fastfeed export``: recorded messages as JSON lines, CSV or Parquet, streamed.

Rows come from SQLite in stream, epoch, seq order through one cursor and leave in chunks, so
memory stays bounded however large the recording. Each row ends with its ``epoch`` (0, or the
number of venue restarts of its stream before it: a seq is unique within an epoch). Two row
shapes:

* frames (default): one row per message, the exact frame (``frame`` text, or ``frame_b64`` for
  binary frames; Parquet keeps the bytes in ``frame`` with a ``binary`` flag); JSON lines also
  carry ``kind`` (``message``) and hold the venue's REST snapshots (``kind`` ``snapshot``, the
  exact body as ``frame``, ``seq`` its update id) where that id falls in their stream;
* depth levels (``--depth-levels``): one row per book level of every depth message, with
  ``side`` (bid/ask), ``level`` (1 = best), ``price`` and ``size`` as exact decimals.

The columns are documented in docs/schema.md.
"""

from __future__ import annotations

import argparse
import base64
import csv
import heapq
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import orjson

from fastfeed import defaults
from fastfeed.errors import ConfigError, FastfeedError
from fastfeed.store import Batch, MessageRow, SnapshotRow, Store
from fastfeed.tools.progress import Progress
from fastfeed.venues.events import Message
from fastfeed.venues.tickdb import TickDBAdapter

__all__ = [
    "FORMATS",
    "FRAME_COLUMNS",
    "LEVEL_COLUMNS",
    "ExportFilter",
    "export",
    "export_lines",
    "filter_from_args",
    "parse_time",
]

FORMATS = ("jsonl", "csv", "parquet")
# "epoch" comes last so the documented leading fields keep their order.
FRAME_COLUMNS = ("venue", "channel", "symbol", "seq", "recv_ns", "frame", "frame_b64", "epoch")
LEVEL_COLUMNS = (
    "venue",
    "channel",
    "symbol",
    "seq",
    "recv_ns",
    "ts_ms",
    "side",
    "level",
    "price",
    "size",
    "epoch",
)
# Parquet decimals: 38 digits with 18 after the point hold any price or size a venue sends as
# text (up to 20 integer digits); a value that does not fit is an error, never rounded.
DECIMAL_PRECISION = 38
DECIMAL_SCALE = 18
PARQUET_MISSING = "parquet export needs pyarrow: pip install 'fastfeed[parquet]'"


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which messages to export: a stream selection and a receive-time window [from, to)."""

    channel: str | None = None
    symbol: str | None = None
    from_ns: int | None = None
    to_ns: int | None = None

    def keep(self, row: MessageRow | SnapshotRow) -> bool:
        """Whether ``row`` falls in the time window (stream filters are applied in SQL)."""
        return (self.from_ns is None or row.recv_ns >= self.from_ns) and (
            self.to_ns is None or row.recv_ns < self.to_ns
        )


def parse_time(text: str, flag: str) -> int:
    """``--from``/``--to`` value: epoch nanoseconds, or ISO-8601 (UTC unless an offset is given).

    Raises:
        ConfigError: neither form.
    """
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r}: expected ISO-8601 UTC (2024-11-24T09:30:00Z) or epoch nanoseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def filter_from_args(args: argparse.Namespace) -> ExportFilter:
    """The filter the export flags ask for; raises ConfigError on a bad time or window."""
    from_ns = None if args.from_ is None else parse_time(args.from_, "--from")
    to_ns = None if args.to is None else parse_time(args.to, "--to")
    if from_ns is not None and to_ns is not None and to_ns <= from_ns:
        raise ConfigError(f"--to ({to_ns} ns) must be after --from ({from_ns} ns)")
    return ExportFilter(args.channel, args.symbol, from_ns, to_ns)


def export(args: argparse.Namespace, store: Store, pending: Batch | None = None) -> None:
    """Run ``fastfeed export`` with the parsed flags against an open store (and the journal's
    records past it, derived in memory: ``pending``)."""
    flt = filter_from_args(args)
    if args.depth_levels and flt.channel not in (None, "depth"):
        raise ConfigError(f"--depth-levels exports depth books; --channel is {flt.channel!r}")
    channel = "depth" if args.depth_levels else flt.channel
    if args.format == "parquet":
        if args.output is None:
            raise ConfigError("parquet export needs --output FILE (it is not a text stream)")
        _require_pyarrow()
    total = sum(
        s["records"]
        for s in store.status(pending)["streams"]
        if (channel is None or s["channel"] == channel)
        and (flt.symbol is None or s["symbol"] == flt.symbol)
    )
    progress = Progress("exporting messages", total)
    source: Iterable[MessageRow | SnapshotRow] = store.iter_messages(
        channel=channel, symbol=flt.symbol, pending=pending
    )
    if args.format == "jsonl" and not args.depth_levels:
        snapshots = store.iter_snapshots(channel=channel, symbol=flt.symbol, pending=pending)
        source = heapq.merge(source, snapshots, key=_stream_order)
    rows = _rows(source, flt, progress)
    try:
        if args.format == "parquet":
            _write_parquet(args.output, rows, levels=args.depth_levels)
        elif args.output is not None:
            with Path(args.output).open("wb") as fh:
                _write_text(fh, args.format, rows, levels=args.depth_levels)
        else:
            _write_text(sys.stdout.buffer, args.format, rows, levels=args.depth_levels)
    finally:
        progress.close()


def _rows(
    rows: Iterable[MessageRow | SnapshotRow], flt: ExportFilter, progress: Progress
) -> Iterator[Any]:
    for n, row in enumerate(rows, start=1):
        progress.update(n)
        if flt.keep(row):
            yield row


def _stream_order(row: MessageRow | SnapshotRow) -> tuple[Any, ...]:
    """The store's message order (stream, epoch, seq, LSN), with snapshots placed at their
    update id among their stream's messages (venues with snapshots have one epoch)."""
    if type(row) is SnapshotRow:
        return (row.venue, row.channel, row.symbol, 0, False, row.seq, row.lsn)
    assert type(row) is MessageRow
    seq = row.seq
    return (row.venue, row.channel, row.symbol, row.epoch, seq is None, seq or 0, row.lsn)


# -- row shapes ------------------------------------------------------------------------------------
def _snapshot_doc(row: SnapshotRow) -> dict[str, Any]:
    return {
        "venue": row.venue,
        "channel": row.channel,
        "symbol": row.symbol,
        "seq": row.seq,
        "recv_ns": row.recv_ns,
        "frame": row.body.decode(errors="replace"),
        "kind": "snapshot",
        "url": row.url,
    }


def _frame_doc(row: MessageRow, *, epoch: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "venue": row.venue,
        "channel": row.channel,
        "symbol": row.symbol,
        "seq": row.seq,
        "recv_ns": row.recv_ns,
    }
    text = None if row.binary else _utf8(row.frame)
    if text is None:
        doc["frame_b64"] = base64.b64encode(row.frame).decode()
    else:
        doc["frame"] = text
    if epoch:
        doc["epoch"] = row.epoch
    return doc


def export_lines(
    rows: Iterable[MessageRow | SnapshotRow], *, epoch: bool = True
) -> Iterable[bytes]:
    """One JSON line per message: the exact frame as text, or base64 for binary frames.

    ``kind`` says ``message``, or ``snapshot`` for a REST snapshot row (its exact body).
    ``epoch=False`` leaves the epoch out, for a reader that does not know it (``tail``).
    """
    for row in rows:
        if type(row) is SnapshotRow:
            doc = _snapshot_doc(row)
        else:
            assert type(row) is MessageRow
            doc = _frame_doc(row, epoch=False)
            doc["kind"] = "message"
            if epoch:
                doc["epoch"] = row.epoch
        yield orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)


def _levels(rows: Iterable[MessageRow]) -> Iterator[tuple[Any, ...]]:
    """One tuple per book level (LEVEL_COLUMNS order) of every depth message, best first."""
    adapter = TickDBAdapter()
    for row in rows:
        event = adapter.parse(row.frame, row.recv_ns, binary=row.binary)
        if type(event) is not Message:
            continue  # SQLite holds only parsed messages; this guards a hand-edited file
        for side, key in (("bid", "bids"), ("ask", "asks")):
            for level, (price, size) in enumerate(event.data.get(key, ()), start=1):
                yield (
                    row.venue,
                    row.channel,
                    row.symbol,
                    row.seq,
                    row.recv_ns,
                    event.ts_ms,
                    side,
                    level,
                    price,
                    size,
                    row.epoch,
                )


def _utf8(frame: bytes) -> str | None:
    try:
        return frame.decode()
    except UnicodeDecodeError:
        return None


# -- text formats ----------------------------------------------------------------------------------
def _write_text(fh: IO[bytes], fmt: str, rows: Iterable[MessageRow], *, levels: bool) -> None:
    if fmt == "jsonl":
        if levels:
            lines: Iterable[bytes] = (
                orjson.dumps(dict(zip(LEVEL_COLUMNS, t, strict=True)), option=_NL)
                for t in _levels(rows)
            )
        else:
            lines = export_lines(rows)
        _write_chunks(fh, lines)
    else:
        _write_chunks(fh, _csv_lines(rows, levels=levels))


_NL = orjson.OPT_APPEND_NEWLINE


def _csv_lines(rows: Iterable[MessageRow], *, levels: bool) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LEVEL_COLUMNS if levels else FRAME_COLUMNS)
    tuples: Iterable[tuple[Any, ...]]
    if levels:
        tuples = _levels(rows)
    else:
        docs = (_frame_doc(r, epoch=True) for r in rows)
        tuples = (tuple(doc.get(c) for c in FRAME_COLUMNS) for doc in docs)
    for t in tuples:
        # None (no seq, or the frame column not used) is an empty field.
        writer.writerow(t)
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue().encode()


def _write_chunks(fh: IO[bytes], lines: Iterable[bytes]) -> None:
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= defaults.EXPORT_CHUNK_ROWS:
            fh.write(b"".join(chunk))
            chunk.clear()
    fh.write(b"".join(chunk))
    fh.flush()


# -- Parquet ---------------------------------------------------------------------------------------
def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(PARQUET_MISSING) from None


def _write_parquet(path: Path, rows: Iterable[MessageRow], *, levels: bool) -> None:
    """Write row groups of EXPORT_ROW_GROUP_ROWS as they fill: memory is one row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dec = pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)
    base = [
        ("venue", pa.string()),
        ("channel", pa.string()),
        ("symbol", pa.string()),
        ("seq", pa.int64()),
        ("recv_ns", pa.int64()),
    ]
    if levels:
        fields = [
            *base,
            ("ts_ms", pa.int64()),
            ("side", pa.string()),
            ("level", pa.int32()),
            ("price", dec),
            ("size", dec),
            ("epoch", pa.int64()),
        ]
        tuples: Iterable[tuple[Any, ...]] = (
            (*t[:8], _decimal(t[8], t), _decimal(t[9], t), t[10]) for t in _levels(rows)
        )
    else:
        fields = [*base, ("frame", pa.binary()), ("binary", pa.bool_()), ("epoch", pa.int64())]
        tuples = (
            (r.venue, r.channel, r.symbol, r.seq, r.recv_ns, r.frame, r.binary, r.epoch)
            for r in rows
        )
    schema = pa.schema(fields)
    with pq.ParquetWriter(str(path), schema) as writer:
        columns: list[list[Any]] = [[] for _ in fields]
        for t in tuples:
            for col, value in zip(columns, t, strict=True):
                col.append(value)
            if len(columns[0]) >= defaults.EXPORT_ROW_GROUP_ROWS:
                writer.write_batch(pa.record_batch(columns, schema=schema))
                columns = [[] for _ in fields]
        if columns[0]:
            writer.write_batch(pa.record_batch(columns, schema=schema))


def _decimal(text: object, row: tuple[Any, ...]) -> Decimal:
    """A book value as a Decimal that fits the Parquet column exactly, or a clear error."""
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        value = Decimal("NaN")
    exponent = value.as_tuple().exponent
    if (
        not value.is_finite()
        or not isinstance(exponent, int)
        or exponent < -DECIMAL_SCALE
        or abs(value) >= _DECIMAL_LIMIT
    ):
        raise FastfeedError(
            f"{row[1]}:{row[2]} seq {row[3]}: book value {text!r} does not fit decimal128"
            f"({DECIMAL_PRECISION}, {DECIMAL_SCALE})",
            hint="export it as jsonl or csv, which keep the exact text",
        )
    return value


_DECIMAL_LIMIT = Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE)
