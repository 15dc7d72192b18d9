"""The terminal status line: cut to the terminal's width, erased before each log line."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from fastfeed import defaults
from fastfeed.recorder.statusline import Status, StatusReporter

__all__: list[str] = []

CLEAR = "\r\x1b[2K"


def sample() -> Status:
    return Status(
        frames=10**9,
        records=10**9,
        accepted_lsn=10**12,
        durable_lsn=10**12 - 5,
        applied_lsn=10**12 - 7,
        gaps_open=0,
        reconnects=3,
        malformed=1,
        connected=True,
    )


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    out = io.StringIO()
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(defaults, "STATUS_INTERVAL_S", 0.01)
    saved = logging.getLogger().handlers[:]
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    logging.getLogger().handlers[:] = [handler]
    yield out
    logging.getLogger().handlers[:] = saved


def test_the_line_never_wraps_at_80_columns(stderr: io.StringIO) -> None:
    reporter = StatusReporter(sample, tty=True, stream=stderr)
    text = reporter.line()
    assert len(text) > 80  # so the cut below is tested
    assert len(reporter.fit(text)) == 79


def test_a_log_line_starts_on_a_cleared_line(stderr: io.StringIO) -> None:
    reporter = StatusReporter(sample, tty=True, stream=stderr)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(reporter.run(stop))
        async with asyncio.timeout(5):
            while "records" not in stderr.getvalue():
                await asyncio.sleep(0.005)
        logging.getLogger("fastfeed.x").warning("reconnecting")
        stop.set()
        await task

    asyncio.run(scenario())
    out = stderr.getvalue()
    # The log line is not glued onto the status line: the line was erased just before it.
    before, _, _ = out.partition("LOG reconnecting\n")
    assert before.endswith(CLEAR)
    assert all(len(part) <= 79 for part in out.split(CLEAR))
