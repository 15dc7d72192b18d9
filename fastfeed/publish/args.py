"""The flags of ``fastfeed publish`` (kept here so the command line stays one screen a command)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fastfeed import defaults

__all__ = ["NATS_ENV", "add_publish_arguments"]

NATS_ENV = "FASTFEED_NATS"  # the NATS server URLs when --nats is not given


def add_publish_arguments(cmd: argparse.ArgumentParser) -> None:
    """Add the ``publish`` flags to ``cmd``."""
    cmd.add_argument("--data-dir", type=Path, default=Path("fastfeed-data"))
    cmd.add_argument(
        "--nats",
        default=os.environ.get(NATS_ENV),
        metavar="URL[,URL...]",
        help=f"e.g. nats://h1:4222,nats://h2:4222 (default ${NATS_ENV}: a URL with a password"
        " belongs there, not in a flag, which ps shows)",
    )
    cmd.add_argument("--stream", default="MD", help="JetStream stream name (default MD)")
    cmd.add_argument(
        "--create-stream",
        action="store_true",
        help="create the stream if missing (file storage, duplicate window 10 min, direct get)",
    )
    cmd.add_argument(
        "--replicas",
        type=int,
        default=defaults.PUBLISH_REPLICAS,
        help=f"with --create-stream: replicas (default {defaults.PUBLISH_REPLICAS})",
    )
    cmd.add_argument(
        "--max-age", type=float, metavar="SECONDS", help="with --create-stream: message max age"
    )
    cmd.add_argument(
        "--metrics",
        metavar="[ADDR:]PORT",
        help="serve Prometheus /metrics and /healthz (ADDR defaults to 127.0.0.1)",
    )
    cmd.add_argument("--log-format", choices=("text", "json"), default="text")
    cmd.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
