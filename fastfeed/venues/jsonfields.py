"""Small readers shared by the JSON venue adapters: type checks and error text for ``Malformed``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard
from urllib.parse import urlsplit, urlunsplit

import orjson

from fastfeed.venues.events import Malformed
from fastfeed.venues.shapes import json_kind

__all__ = ["INT64_MAX", "base_url", "is_int", "is_uint", "load_object", "preview", "rfc3339_ms"]

INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def load_object(frame: bytes | memoryview, binary: bool) -> dict[str, Any] | Malformed:
    """The JSON object a text frame holds, or ``Malformed`` saying what it was instead."""
    if binary:
        return Malformed("expected a text frame, got a binary frame")
    try:
        doc = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        return Malformed(f"expected JSON at $: {exc}")
    if type(doc) is not dict:
        return Malformed(f"expected object at $, got {json_kind(doc)}")
    return doc


def preview(value: object) -> str:
    """A found name for error text: a string's first 40 characters, else its JSON kind."""
    return repr(value[:40]) if type(value) is str else json_kind(value)


def is_uint(value: object) -> TypeGuard[int]:
    """A non-negative int that fits SQLite's signed 64-bit INTEGER."""
    return type(value) is int and 0 <= value <= INT64_MAX


def is_int(value: object) -> TypeGuard[int]:
    """An int that fits a signed 64-bit INTEGER."""
    return type(value) is int and -INT64_MAX - 1 <= value <= INT64_MAX


def rfc3339_ms(text: object) -> int | None:
    """Milliseconds since the epoch of an RFC 3339 UTC time (``2024-10-03T02:46:57.05Z``)."""
    if type(text) is not str or not text.endswith("Z"):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return (when - _EPOCH) // _MS  # exact: no float rounding


def base_url(endpoint: str, default: str, path: str) -> str:
    """``path`` under the scheme and host of ``endpoint`` (or ``default``), user info dropped."""
    parts = urlsplit(endpoint or default)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], path, "", ""))
