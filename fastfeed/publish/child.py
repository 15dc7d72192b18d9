"""``fastfeed run --publish`` / ``[publish]``: the publisher as the recorder's child process.

Its own process, so the recorder's hot path never waits for NATS (nor shares its GIL): the two
meet only in the journal, which the child reads lock-free like ``fastfeed publish`` does.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from fastfeed import defaults
from fastfeed.errors import ConfigError
from fastfeed.publish.app import server_list
from fastfeed.publish.args import NATS_ENV
from fastfeed.publish.cursor import check_stream_name

__all__ = ["PublisherProcess", "publish_argv"]

log = logging.getLogger("fastfeed.publish")

# The [publish] table's keys, the type each holds, and the flag of `fastfeed publish` it becomes.
_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "nats": (str, ""),  # the URLs: given to the child in its environment
    "stream": (str, "--stream"),
    "create_stream": (bool, "--create-stream"),
    "replicas": (int, "--replicas"),
    "max_age": ((int, float), "--max-age"),
    "metrics": ((int, str), "--metrics"),
}


def publish_argv(settings: dict[str, Any], data_dir: Path, log_format: str) -> list[str]:
    """The ``fastfeed publish`` arguments for a ``[publish]`` table (``nats`` required).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, no ``nats``, a bad URL.
    """
    args = ["publish", "--data-dir", str(data_dir), "--log-format", log_format]
    for key, value in settings.items():
        name = key.replace("-", "_")
        if name not in _KEYS:
            raise ConfigError(f"[publish]: unknown key {key!r}: expected {', '.join(_KEYS)}")
        kind, flag = _KEYS[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"[publish]: {key} has the wrong type ({type(value).__name__})")
        if name == "nats":
            continue  # passed in the environment: a password in it must not show in ps
        if name == "create_stream":
            args += [flag] if value else []
        else:
            args += [flag, str(value)]
    if "nats" not in settings:
        raise ConfigError("[publish]: nats = 'nats://HOST:PORT[,...]' is required")
    server_list(str(settings["nats"]))
    check_stream_name(str(settings.get("stream", "MD")))
    return args


def _interpreter() -> list[str]:
    """How to run this fastfeed again: the one-file app itself, or the installed package."""
    if sys.argv and zipfile.is_zipfile(sys.argv[0]):
        return [sys.executable, sys.argv[0]]
    return [sys.executable, "-m", "fastfeed"]


class PublisherProcess:
    """One ``fastfeed publish`` child; ``stop`` ends it (SIGTERM, then SIGKILL past a bound)."""

    def __init__(self, args: list[str], nats: str) -> None:
        # stderr is shared: its log lines interleave with the recorder's, in the same format.
        self._proc = subprocess.Popen(
            [*_interpreter(), *args],
            stdin=subprocess.DEVNULL,
            env={**os.environ, NATS_ENV: nats},
        )
        log.info("publisher started (pid %d)", self._proc.pid)

    def stop(self) -> None:
        """SIGTERM; the child drains its acks for PUBLISH_DRAIN_TIMEOUT_S, saves its cursor."""
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            code = self._proc.wait(defaults.PUBLISH_DRAIN_TIMEOUT_S + 1)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        if code:
            log.warning("publisher exited %d (its next start reconciles)", code)
