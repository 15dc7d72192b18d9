"""A venue that drops every connection after about a second of data at 2,000 msgs/s per stream.

Each such connection subscribed and delivered, so the recorder must come back promptly every
time (not after a growing backoff) and catch up within a few seconds of the venue's last message.
"""

from __future__ import annotations

from pathlib import Path

from .flapping import FlapConfig, run_flapping

__all__: list[str] = []

SEED = 20261130  # fixes the venue's drops and the recorder's jitter


def test_a_flapping_venue_is_caught_up_within_seconds(tmp_path: Path) -> None:
    verdict = run_flapping(FlapConfig(workdir=tmp_path, seed=SEED))
    print(verdict.line())
    assert verdict.ok, "\n".join([verdict.line(), *verdict.problems])
    # Really flapping: most connections were dropped mid-stream by the venue, not by the test.
    assert verdict.drops >= 8 and verdict.connections >= verdict.drops
