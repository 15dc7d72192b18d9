"""Signals that arrive while `fastfeed run` is still importing are kept, not fatal."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from fastfeed.recorder import early_signals

__all__: list[str] = []

CAUGHT = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in CAUGHT}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_handlers")
def test_early_stop_and_reload_signals_are_kept_in_order() -> None:
    early_signals.install()
    for sig in (signal.SIGHUP, signal.SIGTERM):  # SIGHUP's default action would end the process
        os.kill(os.getpid(), sig)
    assert early_signals.take() == [signal.SIGHUP, signal.SIGTERM]
    assert early_signals.take() == []
