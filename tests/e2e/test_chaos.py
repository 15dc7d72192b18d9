"""A short chaos schedule: every fault and recorder action, real kills, nothing lost.

The long version (30 minutes) is ``scripts/chaos.py --minutes 30``; see docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

from .chaos import ACTIONS, FAULTS, ChaosConfig, run_chaos

__all__: list[str] = []

SEED = 20241125  # fixes the schedule, so a failure reproduces with scripts/chaos.py --seed


def test_short_chaos_schedule_loses_nothing(tmp_path: Path) -> None:
    config = ChaosConfig(
        workdir=tmp_path,
        seed=SEED,
        segments=len(FAULTS) + 1,  # every fault kind once, then the clean last venue
        actions_per_segment=1,
        rate=1000.0,
        channels={"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]},
        frames_per_action=(200, 1500),
        max_outage_s=1.0,
    )
    verdict = run_chaos(config)
    print(verdict.line())
    assert verdict.ok, "\n".join([verdict.line(), *verdict.problems])
    # Really done, not vacuously passed: every action kind ran, processes were really killed,
    # every venue restart happened and the venue's lost history shows up as LOST, bounded.
    assert set(verdict.faults) == set(FAULTS)
    assert verdict.kills >= 2 and verdict.cuts >= 2 and verdict.terms >= 1 and verdict.ints >= 1
    assert verdict.runs >= len(ACTIONS)
    assert verdict.sim_restarts == len(FAULTS)
    assert verdict.lost > 0
