"""Fixtures for the publish tests: real nats-server processes on loopback."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .nats_servers import Cluster

__all__ = ["nats1", "nats3"]

# Store dirs on tmpfs when there is one: with sync_interval always the server fsyncs each
# message, ~1 ms apiece on a plain disk, which would make these tests minutes long; what the
# tests check (ids, order, recovery after kills) does not depend on the disk.
_TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _cluster(size: int) -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="fastfeed-nats-", dir=_TMPFS))
    try:
        cluster = Cluster.start(root, size)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def nats1() -> Iterator[Cluster]:
    """One JetStream server (sync_interval always), killed at teardown."""
    yield from _cluster(1)


@pytest.fixture
def nats3() -> Iterator[Cluster]:
    """A 3-node JetStream cluster (sync_interval always), every node killed at teardown."""
    yield from _cluster(3)
