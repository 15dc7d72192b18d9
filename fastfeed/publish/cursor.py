"""The publisher's durable cursor, and the retention floor it gives the recorder.

One file per stream published to, ``<data-dir>/publish/<stream>.cursor`` (JSON):

* ``acked_lsn``: every message derived from journal records up to it is stored in the stream;
* ``floor_seq``: the highest stream sequence the publisher had seen acknowledged before it sent
  anything derived after ``acked_lsn``; whatever of ours is stored after the cursor is stored
  above it, so reconcile reads the stream from ``floor_seq + 1`` only;
* ``stream_created``: the stream's creation time, to notice a deleted and recreated stream;
* ``tracker``: the sequence tracker at ``acked_lsn``, so a restarted publisher derives the same
  epochs and gap changes as the one it replaces.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fastfeed.errors import ConfigError
from fastfeed.journal import fsync_dir

__all__ = [
    "Cursor",
    "check_stream_name",
    "cursor_path",
    "load_cursor",
    "retention_floor",
    "save_cursor",
]

CURSOR_DIR = "publish"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # JetStream stream names: no dots, spaces or wildcards


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where publishing to one stream stands (see the module docstring)."""

    acked_lsn: int = 0
    floor_seq: int = 0
    stream_created: str | None = None
    tracker: dict[str, Any] | None = None


def check_stream_name(stream: str) -> str:
    """``stream`` if JetStream accepts it as a stream name; ConfigError otherwise."""
    if not _NAME.match(stream):
        raise ConfigError(f"--stream {stream!r}: expected letters, digits, '_' or '-'")
    return stream


def cursor_path(data_dir: Path, stream: str) -> Path:
    """The cursor file of ``stream``; raises ConfigError for a name NATS would refuse."""
    return data_dir / CURSOR_DIR / f"{check_stream_name(stream)}.cursor"


def load_cursor(path: Path) -> Cursor:
    """The cursor saved at ``path`` (a fresh one if there is none)."""
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return Cursor()
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(
            f"publish cursor {path} is unreadable ({exc}); delete it to reconcile from scratch"
        ) from None
    try:
        return Cursor(doc["acked_lsn"], doc["floor_seq"], doc["stream_created"], doc["tracker"])
    except (KeyError, TypeError):
        raise ConfigError(
            f"publish cursor {path} is not a cursor; delete it to reconcile from scratch"
        ) from None


def save_cursor(path: Path, cursor: Cursor) -> None:
    """Replace the cursor durably: a crash leaves the old one or the new one, never half."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    doc = {
        "acked_lsn": cursor.acked_lsn,
        "floor_seq": cursor.floor_seq,
        "stream_created": cursor.stream_created,
        "tracker": cursor.tracker,
    }
    # 1. Write the new cursor beside the old one and fsync it: its bytes are on disk.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, orjson.dumps(doc))
        os.fsync(fd)
    finally:
        os.close(fd)
    # 2. Rename over the old one (atomic), then fsync the directory so the rename survives.
    os.replace(tmp, path)
    fsync_dir(path.parent)


def retention_floor(data_dir: Path) -> int | None:
    """The lowest LSN a publisher still needs (its ``acked_lsn + 1``), None if none publishes.

    The recorder's retention never deletes a segment holding a record at or above it, so
    whatever a NATS outage leaves unpublished stays in the journal.
    """
    folder = data_dir / CURSOR_DIR
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return None
    floors = []
    for name in names:
        if name.endswith(".cursor") and not name.startswith("."):
            try:
                floors.append(load_cursor(folder / name).acked_lsn + 1)
            except ConfigError:
                return 1  # unreadable: keep everything until an operator looks
    return min(floors, default=None)
