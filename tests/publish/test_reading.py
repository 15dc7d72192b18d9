"""Reading a stream back: a pull answered 503 (a restarted node, a leader election) is asked
again; one that keeps failing is one line, not a client traceback."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from nats.js.errors import ServiceUnavailableError

from fastfeed import defaults
from fastfeed.publish.reading import StreamReadError, read_stream


def message(seq: int, pending: int) -> Any:
    meta = SimpleNamespace(sequence=SimpleNamespace(stream=seq), num_pending=pending)
    return SimpleNamespace(metadata=meta)


class Pull:
    """A pull subscription that answers 503 ``refusals`` times, then serves seqs 1..3."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.fetches = 0

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        self.fetches += 1
        if self.fetches <= self.refusals:
            raise ServiceUnavailableError
        return [message(1, 2), message(2, 1), message(3, 0)]

    async def unsubscribe(self) -> None: ...


class JetStream:
    def __init__(self, pull: Pull) -> None:
        self.pull = pull

    async def pull_subscribe(self, subject: str, **kwargs: Any) -> Pull:
        return self.pull


async def read(js: JetStream) -> list[int]:
    return [m.metadata.sequence.stream async for m in read_stream(js, "MD", "md.>", 1, 3)]


def test_a_pull_answered_503_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "PUBLISH_BACKOFF_INITIAL_S", 0.001)
    pull = Pull(refusals=3)
    assert asyncio.run(read(JetStream(pull))) == [1, 2, 3]
    assert pull.fetches == 4


def test_a_pull_that_keeps_failing_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "PUBLISH_BACKOFF_INITIAL_S", 0.001)
    monkeypatch.setattr(defaults, "PUBLISH_BACKOFF_CAP_S", 0.001)
    monkeypatch.setattr(defaults, "PUBLISH_API_RETRY_S", 0.05)
    with pytest.raises(StreamReadError, match=r"stream MD did not answer for 0\.05 s"):
        asyncio.run(read(JetStream(Pull(refusals=10**9))))
