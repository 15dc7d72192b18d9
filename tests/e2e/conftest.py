"""Fixtures for the end-to-end tests: a fresh data dir and a simulator subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Simulator

__all__ = ["data_dir", "sim"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir path that does not exist yet (the recorder creates it 0700)."""
    return tmp_path / "data"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    """A fault-free simulator subprocess on a free loopback port, stopped after the test."""
    with Simulator(tmp_path) as server:
        yield server
