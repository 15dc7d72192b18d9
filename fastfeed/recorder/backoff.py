"""Capped exponential reconnect backoff with full jitter (no clock: the caller keeps time)."""

from __future__ import annotations

import random

from fastfeed import defaults

__all__ = ["Backoff"]


class Backoff:
    """Delay before the n-th reconnect: uniform in [0, min(cap, initial * 2**n)].

    Full jitter spreads a fleet of recorders that lost the venue at the same moment, so they do
    not reconnect in lockstep (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015).
    """

    def __init__(
        self,
        initial_s: float = defaults.BACKOFF_INITIAL_S,
        cap_s: float = defaults.BACKOFF_CAP_S,
        rng: random.Random | None = None,
    ) -> None:
        self._initial = initial_s
        self._cap = cap_s
        self._rng = rng or random.Random()
        self.attempt = 0

    def ceiling(self) -> float:
        """The largest delay the next call can return."""
        return min(self._cap, self._initial * 2.0**self.attempt)

    def next_delay(self) -> float:
        """Return the next delay in seconds and move one step up the exponential."""
        delay = self._rng.uniform(0.0, self.ceiling())
        if self._initial * 2.0**self.attempt < self._cap:
            self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from the initial delay (after a connection stayed healthy)."""
        self.attempt = 0
