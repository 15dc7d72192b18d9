"""Async waiters for durability, woken from the commit thread once per commit, not per waiter."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading

__all__ = ["DurableWaiters"]

_Outcome = tuple[asyncio.Future[None], BaseException | None]


class DurableWaiters:
    """Futures keyed by LSN in a heap; ``release`` completes every one a commit covers."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._lock = threading.Lock()  # the commit thread and event loops both touch the heap
        self._seq = itertools.count()  # tie-breaker: futures do not compare

    def add(self, lsn: int) -> asyncio.Future[None]:
        """A future on the running loop, completed once ``release`` covers ``lsn``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            heapq.heappush(self._heap, (lsn, next(self._seq), fut))
        return fut

    def release(self, durable: int, error: BaseException | None) -> None:
        """Complete waiters with LSN <= ``durable``; with ``error`` set, fail all the others.

        Thread-safe. Each loop gets one call_soon_threadsafe however many waiters it has.
        """
        ready: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        with self._lock:
            while self._heap and (error is not None or self._heap[0][0] <= durable):
                lsn, _, fut = heapq.heappop(self._heap)
                ready.setdefault(fut.get_loop(), []).append(
                    (fut, None if lsn <= durable else error)
                )
        for loop, outcomes in ready.items():
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to wake
                loop.call_soon_threadsafe(_complete, outcomes)


def _complete(outcomes: list[_Outcome]) -> None:
    """On the waiters' loop: complete each future (a waiter may have been cancelled)."""
    for fut, error in outcomes:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
