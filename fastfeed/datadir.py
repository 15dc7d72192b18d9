"""The data directory: created private (0700, files 0600) and stamped with a format version.

The one place that names what a data dir holds: ``FORMAT`` (the stamp), ``journal/`` and
``fastfeed.db``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastfeed.errors import ConfigError, JournalFormatError

__all__ = [
    "DATA_DIR_FORMAT_VERSION",
    "JOURNAL_DIR",
    "STORE_FILE",
    "open_data_dir",
    "prepare_data_dir",
]

DATA_DIR_FORMAT_VERSION = 1  # the data dir's layout; bump when it changes incompatibly
JOURNAL_DIR = "journal"  # the journal's directory inside the data dir
STORE_FILE = "fastfeed.db"  # the SQLite file inside the data dir
_STAMP = "FORMAT"


def prepare_data_dir(path: Path) -> Path:
    """Create (0700) or check the data dir for writing; every file made after this is 0600."""
    _private_files()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data dir {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"data dir {path} is not writable")
    stamp = path / _STAMP
    if not stamp.exists():
        tmp = path / f".{_STAMP}.tmp"
        tmp.write_text(f"{DATA_DIR_FORMAT_VERSION}\n")
        os.replace(tmp, stamp)
    _check_version(path)
    return path


def open_data_dir(path: Path) -> Path:
    """Check an existing data dir for reading (status, gaps, export): present and our version."""
    if not path.is_dir():
        raise ConfigError(f"no data dir at {path} (give --data-dir DIR)")
    _check_version(path)
    _private_files()  # an export's output file holds the recording: private like the data dir
    return path


def _private_files() -> None:
    """Every file and directory this process creates from now on is its owner's alone."""
    os.umask(0o077)


def _check_version(path: Path) -> None:
    stamp = path / _STAMP
    try:
        text = stamp.read_text().strip()
    except FileNotFoundError:
        raise JournalFormatError(
            f"{path} has no {_STAMP} file: not a fastfeed data dir",
            hint="point --data-dir at a directory fastfeed created",
        ) from None
    if text != str(DATA_DIR_FORMAT_VERSION):
        raise JournalFormatError(
            f"data dir {path} has format version {text!r}; this fastfeed reads"
            f" {DATA_DIR_FORMAT_VERSION}",
            hint="use the fastfeed version that wrote it to export the data",
        )
