"""Logging set-up: text or JSON lines on stderr, with every secret redacted before output."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable

import orjson

__all__ = ["RateLimiter", "setup_logging"]

REDACTED = "***"
# A secret shorter than this is replaced only where it stands alone (not inside a longer token):
# a 3-letter key "key" would otherwise turn "api_key=key" into "api_***=***".
_SHORT_SECRET = 8
_TOKEN_CHARS = r"A-Za-z0-9_.~\-"


class _RedactingFilter(logging.Filter):
    """Replaces each secret in the fully formatted message (args and exception text included).

    It sits on the handler, so records from every library (picows logs URLs on redirects) pass it.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        parts = []
        for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
            if len(secret) >= _SHORT_SECRET:
                parts.append(re.escape(secret))
            else:
                parts.append(f"(?<![{_TOKEN_CHARS}]){re.escape(secret)}(?![{_TOKEN_CHARS}])")
        self._pattern = re.compile("|".join(parts)) if parts else None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        message = self._pattern.sub(REDACTED, message)
        if record.exc_text:
            record.exc_text = self._pattern.sub(REDACTED, record.exc_text)
        record.msg, record.args = message, None
        return True


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus any ``extra`` fields given."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_text or record.exc_info:
            doc["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return orjson.dumps(doc, default=str).decode()


def setup_logging(fmt: str, level: str, secrets: Iterable[str] = ()) -> None:
    """Route all logging to stderr in ``fmt`` ("text" or "json") at ``level``, redacting secrets."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    handler.addFilter(_RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # picows logs every connection at INFO; ours already say the same, without the noise.
    logging.getLogger("picows").setLevel(max(root.level, logging.WARNING))


class RateLimiter:
    """Allows at most ``per_minute`` events per rolling minute."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._window_start = 0.0
        self._in_window = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._window_start >= 60.0:
            self._window_start, self._in_window = now, 0
        if self._in_window < self._per_minute:
            self._in_window += 1
            return True
        return False
