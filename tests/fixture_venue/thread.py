"""Run a fixture venue on its own event loop thread, driven from synchronous test code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["Venue", "running"]

START_TIMEOUT_S = 30.0


class Venue(Protocol):
    """What ``running`` needs of a fixture venue."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...


@contextmanager
def running(venue: Venue) -> Iterator[asyncio.AbstractEventLoop]:
    """Start ``venue`` on a fresh loop in a thread; stop it and join the thread on exit."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    async def start() -> None:
        try:
            await venue.start()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            ready.set()

    def main() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(start())  # done before `ready` is set: nothing left to own
        loop.run_forever()
        del task

    thread = threading.Thread(target=main, name="fixture-venue", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S) or failure:
        raise RuntimeError(f"fixture venue did not start: {failure}")
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(venue.close(), loop).result(START_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        loop.close()
