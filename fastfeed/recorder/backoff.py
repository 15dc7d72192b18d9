"""When to reconnect: promptly after a productive connection, else capped exponential backoff.

No clock: the caller keeps time. The random source can be seeded, so a test or a chaos run
reproduces every delay.
"""

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
        after_data_s: tuple[float, float] = defaults.RECONNECT_AFTER_DATA_S,
    ) -> None:
        self._initial = initial_s
        self._cap = cap_s
        self._rng = rng or random.Random()
        self._after_data = after_data_s
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

    def after_data(self) -> float:
        """The delay after a connection that subscribed and delivered market data.

        Such a connection was healthy however short it lived (a venue that drops connections
        every second still delivers): waiting longer only loses data a venue without replay
        never sends again. So the exponential starts over and the delay is short, jittered
        and bounded below.
        """
        self.attempt = 0
        return self._rng.uniform(*self._after_data)
