"""Reconnect backoff: exponential ceiling, capped, full jitter, prompt after data, seeded."""

from __future__ import annotations

import random

from fastfeed.recorder.backoff import Backoff


def test_ceiling_doubles_up_to_the_cap_and_starts_over_after_data() -> None:
    b = Backoff(initial_s=1.0, cap_s=60.0, rng=random.Random(7))
    ceilings = []
    for _ in range(9):
        ceilings.append(b.ceiling())
        b.next_delay()
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    b.after_data()
    assert b.ceiling() == 1.0


def test_delays_are_jittered_within_the_ceiling() -> None:
    b = Backoff(initial_s=1.0, cap_s=4.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 150  # full jitter: spread, not fixed steps
    assert max(delays[10:]) > 3.0  # the cap is actually reached


def test_after_data_is_short_bounded_below_and_starts_the_exponential_over() -> None:
    b = Backoff(initial_s=1.0, cap_s=60.0, rng=random.Random(3), after_data_s=(0.1, 0.5))
    for _ in range(6):
        b.next_delay()
    assert b.ceiling() == 60.0
    delays = [b.after_data() for _ in range(100)]
    assert all(0.1 <= d <= 0.5 for d in delays)  # never 0: a fleet does not reconnect at once
    assert b.ceiling() == 1.0


def test_a_seeded_backoff_repeats_its_delays() -> None:
    def run(seed: int) -> list[float]:
        b = Backoff(rng=random.Random(seed))
        return [b.next_delay() for _ in range(5)] + [b.after_data() for _ in range(5)]

    assert run(11) == run(11)
    assert run(11) != run(12)
