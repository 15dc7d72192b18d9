"""The simulator's side of the command protocol, sans-I/O: a client's text frame in, what to do
out (docs/protocol.md; the codes are TickDB's, from fastfeed/venues/tickdb.py).

``read_command`` checks the envelope (a JSON object with a string ``cmd``); the session then
applies its rate limit, which needs the clock, and ``interpret`` decides the rest: a ``Ping``,
``Unsubscribe`` or ``Subscribe`` to carry out, or an ``Error`` to answer. Nothing here reads
the clock, the streams or the socket, so every refusal is decided in one place and tested
without a server.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from fastfeed.venues.tickdb import CHANNELS, CODE_BAD_REQUEST, CODE_UNKNOWN_NAME, validate_symbol

__all__ = [
    "Command",
    "Error",
    "Ping",
    "Subscribe",
    "Unsubscribe",
    "interpret",
    "read_command",
]


@dataclass(frozen=True, slots=True)
class Error:
    """Answer ``{"cmd": cmd, "code": code, "message": message[, "data": data]}``."""

    cmd: str
    code: int
    message: str
    data: object = None

    def doc(self) -> dict[str, Any]:
        """The reply as it is sent."""
        doc: dict[str, Any] = {"cmd": self.cmd, "code": self.code, "message": self.message}
        if self.data is not None:
            doc["data"] = self.data
        return doc


@dataclass(frozen=True, slots=True)
class Ping:
    """Answer a pong (unless the connection is stalled by a fault)."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Drop these streams and acknowledge with ``echo``."""

    channel: str
    symbols: list[str]
    echo: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Start these streams, from ``resume[symbol]`` where given, and acknowledge with ``echo``."""

    channel: str
    symbols: list[str]
    resume: dict[str, int]
    echo: dict[str, Any]


Command = Ping | Unsubscribe | Subscribe


def read_command(payload: bytes) -> tuple[str, dict[str, Any]] | Error:
    """The command name and the whole object, or the error for a frame that is neither."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Error("error", CODE_BAD_REQUEST, "expected a JSON object")
    cmd = doc.get("cmd") if type(doc) is dict else None
    if type(cmd) is not str:
        return Error("error", CODE_BAD_REQUEST, 'expected an object with a string "cmd"')
    return cmd, doc


def interpret(
    cmd: str,
    doc: dict[str, Any],
    *,
    plain: bool,
    reject_symbols: Collection[str],
    reject_code: int,
) -> Command | Error:
    """What a well-formed command asks for, or why it is refused.

    ``plain``: plain TickDB, which has no ``resume`` (ignored, as an unknown field);
    ``reject_symbols``/``reject_code``: the fault plan's refused subscriptions.
    """
    if cmd == "ping":
        return Ping()
    if cmd not in ("subscribe", "unsubscribe"):
        return Error("error", CODE_BAD_REQUEST, f"unknown command {cmd[:40]!r}")
    data = doc.get("data")
    if type(data) is not dict:
        return Error(cmd, CODE_BAD_REQUEST, 'expected an object at "data"')
    channel, symbols = data.get("channel"), data.get("symbols")
    if (
        type(symbols) is not list
        or not symbols
        or any(type(s) is not str for s in symbols)
        or type(channel) is not str
    ):
        return Error(
            cmd, CODE_BAD_REQUEST, 'expected "channel" and a non-empty "symbols" array of strings'
        )
    echo = {"channel": channel, "symbols": symbols}
    if channel not in CHANNELS:
        return Error(cmd, CODE_UNKNOWN_NAME, f"Unknown channel {channel[:40]!r}", echo)
    if cmd == "unsubscribe":
        return Unsubscribe(channel, symbols, echo)
    bad = [s for s in symbols if validate_symbol(s) is not None]
    if bad:
        return Error(cmd, CODE_UNKNOWN_NAME, "Unknown symbol", {"channel": channel, "symbols": bad})
    rejected = [s for s in symbols if s in reject_symbols]
    if rejected:
        which = {"channel": channel, "symbols": rejected}
        return Error(cmd, reject_code, "Subscription rejected", which)
    resume = data.get("resume")
    if resume is None or plain:
        return Subscribe(channel, symbols, {}, echo)
    if type(resume) is not dict or any(
        type(v) is not int or v < 1 or k not in symbols for k, v in resume.items()
    ):
        return Error(cmd, CODE_BAD_REQUEST, 'expected "resume" {SYMBOL: seq >= 1}', echo)
    return Subscribe(channel, symbols, resume, echo)
