"""Resync scheduling: immediate, coalesced per channel, retried until the gap closes."""

from __future__ import annotations

from fastfeed.derive.streams import StreamKey
from fastfeed.recorder.resync import ResyncScheduler

A = StreamKey("depth", "AAPL.US")
T = StreamKey("depth", "TSLA.US")
B = StreamKey("trade", "BTC.CC")


def test_new_gaps_are_asked_at_once_one_command_per_channel() -> None:
    s = ResyncScheduler(retry_s=1.0, min_interval_s=0.1)
    assert s.due({A, T, B}, now=10.0) == {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]}


def test_a_stream_is_asked_again_only_after_retry_s() -> None:
    s = ResyncScheduler(retry_s=1.0, min_interval_s=0.1)
    assert s.due({A}, 10.0) == {"depth": ["AAPL.US"]}
    assert s.due({A}, 10.5) == {}
    assert s.due({A, T}, 10.6) == {"depth": ["TSLA.US"]}
    assert s.due({A, T}, 11.0) == {"depth": ["AAPL.US"]}


def test_commands_are_spaced_by_min_interval() -> None:
    s = ResyncScheduler(retry_s=1.0, min_interval_s=0.1)
    assert s.due({A}, 10.0) == {"depth": ["AAPL.US"]}
    assert s.due({A, T}, 10.05) == {}
    assert s.due({A, T}, 10.25) == {"depth": ["TSLA.US"]}


def test_filled_streams_are_forgotten_and_a_new_gap_is_asked_at_once() -> None:
    s = ResyncScheduler(retry_s=1.0, min_interval_s=0.1)
    s.due({A}, 10.0)
    assert s.due(set(), 10.2) == {}
    assert s.due({A}, 10.3) == {"depth": ["AAPL.US"]}


def test_a_connect_counts_as_asking() -> None:
    s = ResyncScheduler(retry_s=1.0, min_interval_s=0.1)
    s.asked([A, T], 10.0)
    assert s.due({A, T}, 10.5) == {}
    assert s.due({A, T}, 11.0) == {"depth": ["AAPL.US", "TSLA.US"]}
