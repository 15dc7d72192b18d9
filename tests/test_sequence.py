"""Sequence tracker: exact gaps and states, duplicates, venue losses, time gaps, checkpoints."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastfeed.derive.sequence import (
    CHECKPOINT_FORMAT,
    Observation,
    Outcome,
    SequenceTracker,
    StreamStats,
    SyncState,
)
from fastfeed.derive.streams import Gap, GapState, StreamKey
from fastfeed.errors import StoreError

AAPL = StreamKey("depth", "AAPL.US")
TSLA = StreamKey("trade", "TSLA.US")
OPEN, FILLED, LOST = GapState.OPEN, GapState.FILLED, GapState.LOST
NEW = Observation(Outcome.NEW)
DUP = Observation(Outcome.DUPLICATE)


def feed(tracker: SequenceTracker, key: StreamKey, seqs: list[int]) -> list[Observation]:
    """Observe each seq at recv_ns = seq * 100."""
    return [tracker.observe(key, seq, seq * 100) for seq in seqs]


def test_in_order_stream() -> None:
    tracker = SequenceTracker()
    assert feed(tracker, AAPL, [41, 42, 43]) == [NEW, NEW, NEW]
    assert tracker.resume_point(AAPL) == 44
    assert tracker.stream_stats(AAPL) == StreamStats(SyncState.SYNCED, 3, 0, 41, 43, 4300, None, 0)
    assert tracker.gaps() == []
    assert tracker.resume_point(TSLA) is None
    assert tracker.stream_stats(TSLA) is None


def test_jump_then_fill() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2, 3])
    gap = Gap(1, AAPL, 4, 6, 700, None, OPEN, "seq jump")
    assert tracker.observe(AAPL, 7, 700) == Observation(Outcome.NEW, opened=(gap,), resync_from=4)
    assert tracker.stream_stats(AAPL).state is SyncState.GAPPED  # type: ignore[union-attr]
    assert tracker.observe(AAPL, 5, 800) == NEW
    assert tracker.observe(AAPL, 4, 900) == NEW
    assert tracker.resume_point(AAPL) == 6
    assert tracker.gaps() == [gap]
    filled = Gap(1, AAPL, 4, 6, 700, 1000, FILLED, "seq jump")
    assert tracker.observe(AAPL, 6, 1000) == Observation(Outcome.NEW, filled=(filled,))
    assert tracker.gaps() == [filled]
    assert tracker.resume_point(AAPL) == 8
    assert tracker.open_gap_count() == 0
    assert tracker.stream_stats(AAPL) == StreamStats(SyncState.SYNCED, 7, 0, 1, 7, 1000, None, 0)


def test_reorder_opens_and_fills_a_one_seq_gap() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2, 3])
    opened = Gap(1, AAPL, 4, 4, 500, None, OPEN, "seq jump")
    assert tracker.observe(AAPL, 5, 500) == Observation(
        Outcome.NEW, opened=(opened,), resync_from=4
    )
    filled = Gap(1, AAPL, 4, 4, 500, 501, FILLED, "seq jump")
    assert tracker.observe(AAPL, 4, 501) == Observation(Outcome.NEW, filled=(filled,))
    assert tracker.resume_point(AAPL) == 6


def test_duplicates_below_and_above_the_hole_are_counted() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2, 5, 6])
    assert feed(tracker, AAPL, [2, 1, 6, 5]) == [DUP, DUP, DUP, DUP]
    assert tracker.observe(AAPL, 4, 10) == NEW
    assert tracker.observe(AAPL, 4, 11) == DUP
    stats = tracker.stream_stats(AAPL)
    assert stats == StreamStats(SyncState.GAPPED, 5, 5, 1, 6, 11, None, 1)
    assert tracker.resume_point(AAPL) == 3


def test_jump_partial_fill_then_venue_history_gone() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2, 3, 10])  # gap [4, 9]
    tracker.observe(AAPL, 4, 4000)
    tracker.observe(AAPL, 5, 5000)
    tracker.observe(AAPL, 7, 7000)  # inside: [6, 9] minus 7 still missing
    assert tracker.resume_point(AAPL) == 6
    # Reconnect: we ask to resume at 6, the venue only has history from 9 on.
    tracker.resume_requested(AAPL, 6)
    assert tracker.stream_stats(AAPL).state is SyncState.RESYNCING  # type: ignore[union-attr]
    lost = tracker.on_ack(AAPL, 9, 20, 9500)
    # The gap [4, 9] splits: 4-5 arrived (filled, keeps the id), 6 and 8 are gone, 9 is
    # still expected from the replay.
    assert lost == (
        Gap(2, AAPL, 6, 6, 1000, 9500, LOST, "venue history gone"),
        Gap(3, AAPL, 8, 8, 1000, 9500, LOST, "venue history gone"),
    )
    assert tracker.gaps() == [
        Gap(1, AAPL, 4, 5, 1000, 9500, FILLED, "seq jump"),
        lost[0],
        lost[1],
        Gap(4, AAPL, 9, 9, 1000, None, OPEN, "seq jump"),
    ]
    assert tracker.resume_point(AAPL) == 9
    assert tracker.stream_stats(AAPL).state is SyncState.GAPPED  # type: ignore[union-attr]
    # The replay from 9 fills the rest; 10 is a duplicate.
    filled = Gap(4, AAPL, 9, 9, 1000, 9900, FILLED, "seq jump")
    assert tracker.observe(AAPL, 9, 9900) == Observation(Outcome.NEW, filled=(filled,))
    assert tracker.observe(AAPL, 10, 9901) == DUP
    assert tracker.observe(AAPL, 11, 9902) == NEW
    assert tracker.stream_stats(AAPL) == StreamStats(SyncState.SYNCED, 9, 1, 1, 11, 9902, 20, 0)


def test_gap_partly_received_below_the_loss_becomes_filled() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2, 3, 10, 4, 5])
    tracker.resume_requested(AAPL, 6)
    assert tracker.on_ack(AAPL, 8, 20, 5000) == (
        Gap(2, AAPL, 6, 7, 1000, 5000, LOST, "venue history gone"),
    )
    assert tracker.gaps() == [
        Gap(1, AAPL, 4, 5, 1000, 5000, FILLED, "seq jump"),
        Gap(2, AAPL, 6, 7, 1000, 5000, LOST, "venue history gone"),
        Gap(3, AAPL, 8, 9, 1000, None, OPEN, "seq jump"),
    ]


def test_reconnect_with_history_kept_loses_nothing() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2])
    tracker.connection_lost(300)  # seq streams: the resume decides, not the disconnect
    tracker.connection_restored(400)
    tracker.resume_requested(AAPL, 3)
    assert tracker.on_ack(AAPL, 3, 50, 500) == ()
    assert tracker.gaps() == []
    assert tracker.stream_stats(AAPL).state is SyncState.SYNCED  # type: ignore[union-attr]


def test_reconnect_past_the_venue_history_loses_the_unseen_range() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2])
    tracker.resume_requested(AAPL, 3)
    lost = Gap(1, AAPL, 3, 1041, 700, 700, LOST, "venue history gone")
    assert tracker.on_ack(AAPL, 1042, 1500, 700) == (lost,)
    assert tracker.resume_point(AAPL) == 1042
    assert tracker.observe(AAPL, 1042, 800) == NEW
    assert tracker.open_gap_count() == 0


def test_a_seq_lost_alone_moves_the_resume_point_past_it_and_nothing_else() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2])
    lost = Gap(1, AAPL, 3, 3, 300, 300, LOST, "too big")
    assert tracker.lose_seq(AAPL, 3, 300, "too big") == (lost,)
    assert tracker.resume_point(AAPL) == 4
    assert tracker.lose_seq(AAPL, 2, 300, "too big") == ()  # received: not lost
    assert tracker.lose_seq(TSLA, 1, 300, "too big") == ()  # no baseline: nothing to skip
    tracker.resume_requested(AAPL, 4)
    assert tracker.on_ack(AAPL, 4, 9, 400) == ()
    assert feed(tracker, AAPL, [4, 5]) == [NEW, NEW]
    assert tracker.gaps() == [lost] and tracker.open_gap_count() == 0


def test_a_seq_lost_inside_an_open_gap_splits_it() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2, 6])
    tracker.changed_gaps()
    assert tracker.lose_seq(AAPL, 4, 700, "too big") == (
        Gap(2, AAPL, 4, 4, 600, 700, LOST, "too big"),
    )
    assert sorted((g.from_seq, g.to_seq, g.state) for g in tracker.gaps()) == [
        (3, 3, OPEN),
        (4, 4, LOST),
        (5, 5, OPEN),
    ]
    assert tracker.resume_point(AAPL) == 3


def test_first_seq_with_a_resume_point_opens_a_gap_from_it() -> None:
    tracker = SequenceTracker()
    tracker.resume_requested(AAPL, 100)
    assert tracker.resume_point(AAPL) == 100
    opened = Gap(1, AAPL, 100, 104, 9, None, OPEN, "seq jump")
    assert tracker.observe(AAPL, 105, 9) == Observation(
        Outcome.NEW, opened=(opened,), resync_from=100
    )
    assert tracker.stream_stats(AAPL) == StreamStats(
        SyncState.RESYNCING, 1, 0, 105, 105, 9, None, 1
    )


def test_fresh_stream_resumed_and_acked_higher() -> None:
    tracker = SequenceTracker()
    tracker.resume_requested(AAPL, 100)
    assert tracker.on_ack(AAPL, 120, 130, 5) == (
        Gap(1, AAPL, 100, 119, 5, 5, LOST, "venue history gone"),
    )
    assert tracker.observe(AAPL, 120, 6) == NEW
    assert tracker.stream_stats(AAPL) == StreamStats(SyncState.SYNCED, 1, 0, 120, 120, 6, 130, 0)


def test_live_ack_without_resume_changes_nothing() -> None:
    tracker = SequenceTracker()
    assert tracker.on_ack(AAPL, 1042, 1041, 5) == ()
    assert tracker.observe(AAPL, 1042, 6) == NEW
    assert tracker.resume_point(AAPL) == 1043


def test_plain_disconnect_window_is_a_lost_time_gap() -> None:
    tracker = SequenceTracker()
    tracker.observe_unsequenced(TSLA, 100)
    tracker.observe_unsequenced(TSLA, 200)
    feed(tracker, AAPL, [1])  # a seq stream: no time gap
    tracker.connection_lost(250)
    gap = Gap(1, TSLA, None, None, 200, None, LOST, "disconnected (no sequence numbers)")
    assert tracker.gaps() == [gap]
    tracker.connection_restored(300)
    assert tracker.changed_gaps() == [Gap(1, TSLA, None, None, 200, 300, LOST, gap.reason)]
    tracker.observe_unsequenced(TSLA, 350)  # the first message after the restore bounds it
    assert tracker.changed_gaps() == [Gap(1, TSLA, None, None, 200, 350, LOST, gap.reason)]
    assert tracker.gaps() == []  # resolved and handed out: the ledger has it now
    assert tracker.stream_stats(TSLA) == StreamStats(
        SyncState.PLAIN, 3, 0, None, None, 350, None, 0
    )
    assert tracker.resume_point(TSLA) is None


def test_plain_down_again_before_any_message_extends_the_same_gap() -> None:
    tracker = SequenceTracker()
    tracker.observe_unsequenced(TSLA, 100)
    tracker.stalled(150)
    tracker.connection_lost(160)  # the stall's drop: still the same hole
    tracker.connection_restored(200)
    tracker.connection_lost(250)
    tracker.connection_restored(300)
    reason = "stalled (no sequence numbers)"
    assert tracker.gaps() == [Gap(1, TSLA, None, None, 100, 300, LOST, reason)]
    tracker.observe_unsequenced(TSLA, 320)
    tracker.connection_lost(400)
    assert tracker.changed_gaps() == [
        Gap(1, TSLA, None, None, 100, 320, LOST, reason),
        Gap(2, TSLA, None, None, 320, None, LOST, "disconnected (no sequence numbers)"),
    ]
    assert [g.gap_id for g in tracker.gaps()] == [2]  # still waiting for its end


def test_changed_gaps_is_incremental_and_keeps_open_gaps() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 3, 6])
    assert [(g.gap_id, g.state) for g in tracker.changed_gaps()] == [(1, OPEN), (2, OPEN)]
    assert tracker.changed_gaps() == []
    tracker.observe(AAPL, 2, 1)
    assert tracker.changed_gaps() == [Gap(1, AAPL, 2, 2, 300, 1, FILLED, "seq jump")]
    assert tracker.gaps() == [Gap(2, AAPL, 4, 5, 600, None, OPEN, "seq jump")]


def test_changed_stats() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1])
    tracker.observe_unsequenced(TSLA, 5)
    assert [k for k, _ in tracker.changed_stats()] == [AAPL, TSLA]
    assert tracker.changed_stats() == []
    tracker.observe(AAPL, 1, 7)
    assert tracker.changed_stats() == [
        (AAPL, StreamStats(SyncState.SYNCED, 1, 1, 1, 1, 7, None, 0))
    ]
    assert tracker.streams() == [AAPL, TSLA]


def test_memory_is_bounded_by_holes_not_messages() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 3])
    for seq in range(4, 20_000):
        tracker.observe(AAPL, seq, seq)
    state = tracker.to_checkpoint()["streams"][0]
    assert (state["base"], state["above"]) == (1, [[3, 19_999]])


def test_checkpoint_of_another_format_is_refused() -> None:
    with pytest.raises(StoreError, match="format 99"):
        SequenceTracker.from_checkpoint({"format": 99})
    with pytest.raises(StoreError, match="damaged"):
        SequenceTracker.from_checkpoint(
            {"format": CHECKPOINT_FORMAT, "next_gap_id": 1, "gaps": [{}]}
        )


# -- venue restarts: a new epoch, never "duplicates forever" ------------------------------------
def test_seq_back_to_one_after_5000_is_a_venue_reset_not_duplicates() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, list(range(1, 5001)))
    reason = "venue reset: seq 5000 then 1"
    # The marker opens epoch 1: the new run of seqs is stored beside epoch 0's, not over it.
    marker = Gap(1, AAPL, None, None, 500_000, 600_000, LOST, reason, epoch=1)
    assert tracker.observe(AAPL, 1, 600_000) == Observation(Outcome.NEW, reset=marker)
    assert [tracker.observe(AAPL, s, 600_000 + s) for s in range(2, 4)] == [NEW, NEW]
    assert tracker.resume_point(AAPL) == 4
    assert tracker.gaps() == [marker]
    assert tracker.stream_stats(AAPL) == StreamStats(
        SyncState.SYNCED, 5003, 0, 1, 3, 600_003, None, 0, epoch=1
    )


def test_reset_loses_the_old_epochs_open_gaps_and_backfills_the_new_one() -> None:
    tracker = SequenceTracker(reset_backwards=10)
    feed(tracker, AAPL, [1, 2, 3, 30, 31])  # gap 4..29 open
    lost = Gap(1, AAPL, 4, 29, 3000, 3500, LOST, "venue reset")  # epoch 0's seqs
    marker = Gap(2, AAPL, None, None, 3100, 3500, LOST, "venue reset: seq 31 then 5", epoch=1)
    opened = Gap(3, AAPL, 1, 4, 3500, None, OPEN, "seq jump", epoch=1)
    # The restart's first seqs were missed: seq 5 opens 1..4 of the new epoch, to backfill.
    assert tracker.observe(AAPL, 5, 3500) == Observation(
        Outcome.NEW, opened=(opened,), resync_from=1, reset=marker
    )
    assert tracker.gaps() == [lost, marker, opened]
    assert tracker.stream_stats(AAPL).state is SyncState.GAPPED  # type: ignore[union-attr]
    tracker.resume_requested(AAPL, 1)
    assert tracker.on_ack(AAPL, 1, 5, 3600) == ()
    assert feed(tracker, AAPL, [1, 2, 3])[-1] == NEW
    filled = Gap(3, AAPL, 1, 4, 3500, 400, FILLED, "seq jump", epoch=1)
    assert tracker.observe(AAPL, 4, 400) == Observation(Outcome.NEW, filled=(filled,))
    assert tracker.observe(AAPL, 5, 500) == DUP  # the replay reaches the live edge
    assert tracker.resume_point(AAPL) == 6


def test_duplicates_reorders_and_replays_are_not_resets() -> None:
    tracker = SequenceTracker(reset_backwards=10)
    feed(tracker, AAPL, [1, 2, 4, 3, 4, 5, 50])  # reorder, duplicate, then a jump: gap 6..49
    # The resync's replay starts far below the live edge, but after an ack: not a reset.
    tracker.resume_requested(AAPL, 6)
    assert tracker.on_ack(AAPL, 6, 60, 6000) == ()
    assert all(not obs.reset for obs in feed(tracker, AAPL, list(range(6, 61))))
    assert tracker.open_gap_count() == 0
    assert all(g.state is FILLED for g in tracker.gaps())
    assert tracker.stream_stats(AAPL).duplicates == 2  # type: ignore[union-attr]


def test_ack_below_the_resume_point_is_a_venue_reset() -> None:
    tracker = SequenceTracker()
    feed(tracker, AAPL, [1, 2, 3])
    tracker.connection_lost(400)
    tracker.resume_requested(AAPL, 4)
    # Sequence extension: asked past head_seq + 1, the venue answers head_seq + 1.
    reason = "venue reset: asked to resume at 4, acked 3"
    marker = Gap(1, AAPL, None, None, 300, 500, LOST, reason, epoch=1)
    assert tracker.on_ack(AAPL, 3, 2, 500) == (marker,)
    assert tracker.resume_point(AAPL) == 1
    opened = Gap(2, AAPL, 1, 2, 600, None, OPEN, "seq jump", epoch=1)
    assert tracker.observe(AAPL, 3, 600) == Observation(
        Outcome.NEW, opened=(opened,), resync_from=1
    )


# -- property: arrivals in any order, checkpoint anywhere ---------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(1, 40))), st.lists(st.integers(1, 39), max_size=20))
def test_every_seq_arriving_in_any_order_fills_every_gap(order: list[int], dups: list[int]) -> None:
    tracker = SequenceTracker()
    seqs = order + dups
    results = [tracker.observe(AAPL, s, i) for i, s in enumerate(seqs)]
    first = order[0]
    # The first seq seen is the baseline: seqs below it were never expected and are dropped
    # like duplicates.
    expected_new = {s for s in order if s >= first}
    assert sum(not r.duplicate for r in results) == len(expected_new)
    assert all(g.state is FILLED for g in tracker.gaps())
    assert tracker.resume_point(AAPL) == 40
    stats = tracker.stream_stats(AAPL)
    assert stats is not None
    assert (stats.records, stats.duplicates) == (len(expected_new), len(seqs) - len(expected_new))


KEYS = [AAPL, TSLA]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("obs"), st.integers(0, 1), st.integers(1, 60)),
        st.tuples(st.just("plain"), st.just(1), st.just(0)),
        st.tuples(st.just("resume"), st.integers(0, 1), st.integers(0, 5)),
        st.tuples(st.just("ack"), st.integers(0, 1), st.integers(0, 8)),
        st.tuples(st.just("lost"), st.just(0), st.just(0)),
        st.tuples(st.just("stalled"), st.just(0), st.just(0)),
        st.tuples(st.just("restored"), st.just(0), st.just(0)),
        st.tuples(st.just("changed"), st.just(0), st.just(0)),
    ),
    max_size=80,
)


def check_invariants(tracker: SequenceTracker) -> None:
    """Every unsettled seq below the highest settled one lies in exactly one OPEN gap."""
    doc = tracker.to_checkpoint()
    gaps = {g["gap_id"]: g for g in doc["gaps"]}
    for s in doc["streams"]:
        above = s["above"]
        settled = {x for lo, hi in above for x in range(lo, hi + 1)}
        top = above[-1][1] if above else s["base"]
        unsettled = {x for x in range(s["base"] + 1, top + 1) if x not in settled}
        in_gaps: list[int] = []
        for gap_id in s["open"]:
            gap = gaps[gap_id]
            assert gap["state"] == "open"
            seqs = range(max(gap["from_seq"], s["base"] + 1), gap["to_seq"] + 1)
            in_gaps += [x for x in seqs if x not in settled]
        assert sorted(in_gaps) == sorted(unsettled)
        assert all(b[0] > a[1] + 1 for a, b in pairwise(above))
        assert not above or above[0][0] > s["base"] + 1


def run(tracker: SequenceTracker, steps: list[tuple[str, int, int]], t0: int) -> list[Any]:
    out: list[Any] = []
    for i, (op, k, n) in enumerate(steps):
        key, now = KEYS[k], t0 + i
        if op == "obs":
            out.append(tracker.observe(key, n, now))
        elif op == "plain":
            tracker.observe_unsequenced(key, now)
        elif op == "resume":
            point = tracker.resume_point(key)
            tracker.resume_requested(key, (point or 1) + n)
        elif op == "ack":
            point = tracker.resume_point(key) or 1
            out.append(tracker.on_ack(key, point + n, point + n + 3, now))
        elif op == "lost":
            tracker.connection_lost(now)
        elif op == "stalled":
            tracker.stalled(now)
        elif op == "restored":
            tracker.connection_restored(now)
        else:
            out.append((tracker.changed_gaps(), tracker.changed_stats()))
        out.append([tracker.resume_point(k) for k in KEYS])
        check_invariants(tracker)
    out.append((tracker.gaps(), tracker.open_gap_count(), tracker.streams()))
    out.append([tracker.stream_stats(k) for k in KEYS])
    out.append((tracker.changed_gaps(), tracker.changed_stats()))
    return out


@pytest.mark.parametrize("backwards", [1000, 5])  # 5: venue resets happen all the time
@settings(max_examples=300, deadline=None)
@given(ops, st.data())
def test_checkpoint_restore_mid_way_behaves_as_uninterrupted(
    backwards: int, steps: list[tuple[str, int, int]], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(steps)))
    whole = SequenceTracker(reset_backwards=backwards)
    expected = run(whole, steps[:cut], 0)[:-3] + run(whole, steps[cut:], cut)

    first = SequenceTracker(reset_backwards=backwards)
    got = run(first, steps[:cut], 0)[:-3]
    state = json.loads(json.dumps(first.to_checkpoint()))  # through JSON, as the store keeps it
    second = SequenceTracker.from_checkpoint(state, reset_backwards=backwards)
    assert second.to_checkpoint() == first.to_checkpoint()
    got += run(second, steps[cut:], cut)
    assert got == expected
    assert second.to_checkpoint() == whole.to_checkpoint()


def test_a_live_acks_first_seq_is_the_baseline_so_a_reordered_first_pair_is_kept() -> None:
    # The venue acks a live subscribe with first_seq 1, then its first two pushes arrive
    # swapped: seq 1 must be recorded (filling the gap seq 2 opened), not dropped as old.
    t = SequenceTracker()
    key = StreamKey("trade", "BTC.CC")
    assert t.on_ack(key, 1, 0, 1) == ()
    opened = t.observe(key, 2, 2)
    assert [(g.from_seq, g.to_seq, g.state) for g in opened.opened] == [(1, 1, GapState.OPEN)]
    late = t.observe(key, 1, 3)
    assert late.outcome is Outcome.NEW
    assert [(g.from_seq, g.state) for g in late.filled] == [(1, GapState.FILLED)]
    stats = t.stream_stats(key)
    assert stats is not None
    assert (stats.first_seq, stats.last_seq, stats.records, stats.open_gaps) == (1, 2, 2, 0)
    assert stats.state is SyncState.SYNCED


# -- ranges (venues numbering updates: Binance U..u) and snapshots ------------------------------
BTC = StreamKey("depth", "BTCUSDT")


def test_ranges_in_order_duplicate_and_overlap() -> None:
    tracker = SequenceTracker()
    assert tracker.observe_range(BTC, 100, 104, 1) == NEW  # baseline: settled up to 104
    assert tracker.observe_range(BTC, 105, 105, 2) == NEW
    assert tracker.observe_range(BTC, 106, 110, 3) == NEW
    assert tracker.observe_range(BTC, 106, 110, 4) == DUP
    assert tracker.observe_range(BTC, 90, 99, 5) == DUP  # before the baseline
    assert tracker.observe_range(BTC, 108, 112, 6) == NEW  # overlaps: its new part counts
    stats = tracker.stream_stats(BTC)
    assert stats is not None
    assert (stats.first_seq, stats.last_seq, stats.records, stats.duplicates) == (104, 112, 4, 2)
    assert stats.state is SyncState.SYNCED and tracker.gaps() == []


def test_range_jump_is_exactly_the_missing_ids_and_a_reorder_fills_it() -> None:
    tracker = SequenceTracker()
    tracker.observe_range(BTC, 100, 104, 1)
    gap = Gap(1, BTC, 105, 111, 2, None, OPEN, "seq jump")
    assert tracker.observe_range(BTC, 112, 115, 2) == Observation(
        Outcome.NEW, opened=(gap,), resync_from=105
    )
    assert tracker.observe_range(BTC, 108, 111, 3) == NEW  # 105..107 still missing
    filled = Gap(1, BTC, 105, 111, 2, 4, FILLED, "seq jump")
    assert tracker.observe_range(BTC, 105, 107, 4) == Observation(Outcome.NEW, filled=(filled,))
    assert tracker.stream_stats(BTC) == StreamStats(SyncState.SYNCED, 4, 0, 104, 115, 4, None, 0)


def test_snapshot_declares_the_missing_ids_lost_up_to_its_id() -> None:
    tracker = SequenceTracker()
    tracker.observe_range(BTC, 100, 104, 1)
    tracker.observe_range(BTC, 112, 115, 2)  # gap 105..111
    tracker.observe_range(BTC, 116, 120, 3)
    lost = Gap(1, BTC, 105, 111, 2, 5, LOST, "not replayable: replaced by a snapshot")
    assert tracker.snapshot(BTC, 130, 5) == (lost,)  # ids above 120 are still on their way
    stats = tracker.stream_stats(BTC)
    assert stats is not None and stats.state is SyncState.SYNCED and stats.open_gaps == 0
    assert tracker.observe_range(BTC, 121, 125, 6) == NEW
    assert tracker.changed_gaps() == [lost]


def test_an_older_snapshot_leaves_the_rest_of_the_gap_open() -> None:
    tracker = SequenceTracker()
    tracker.observe_range(BTC, 100, 104, 1)
    tracker.observe_range(BTC, 112, 115, 2)  # gap 105..111
    lost = Gap(1, BTC, 105, 108, 2, 5, LOST, "not replayable: replaced by a snapshot")
    rest = Gap(2, BTC, 109, 111, 2, None, OPEN, "seq jump")
    assert tracker.snapshot(BTC, 108, 5) == (lost,)
    assert tracker.gaps() == [lost, rest]
    stats = tracker.stream_stats(BTC)
    assert stats is not None and stats.state is SyncState.GAPPED


def test_snapshot_before_any_push_changes_nothing() -> None:
    tracker = SequenceTracker()
    assert tracker.snapshot(BTC, 500, 1) == ()
    assert tracker.observe_range(BTC, 490, 510, 2) == NEW
    assert tracker.gaps() == []


def test_ranges_survive_a_checkpoint() -> None:
    tracker = SequenceTracker()
    tracker.observe_range(BTC, 100, 104, 1)
    tracker.observe_range(BTC, 112, 115, 2)
    again = SequenceTracker.from_checkpoint(json.loads(json.dumps(tracker.to_checkpoint())))
    assert again.observe_range(BTC, 105, 111, 3) == tracker.observe_range(BTC, 105, 111, 3)
    assert again.to_checkpoint() == tracker.to_checkpoint()


# -- venues that send their snapshot in the feed (OKX, Bybit) -------------------------------------
RESUBSCRIBED = "not replayable: replaced by the snapshot of a resubscribe"


def test_an_in_feed_snapshot_is_the_baseline_and_a_planned_restart_loses_nothing() -> None:
    tracker = SequenceTracker()
    assert tracker.restart(BTC, 1000, 1) == ()
    assert tracker.observe_range(BTC, 1001, 1003, 2) == NEW
    # A reconnect's snapshot far ahead, with no gap open: the ids between were not sent to us.
    assert tracker.restart(BTC, 1050, 3) == ()
    assert tracker.observe_range(BTC, 1051, 1052, 4) == NEW
    assert tracker.gaps() == []
    stats = tracker.stream_stats(BTC)
    assert stats is not None  # snapshots are no records of the stream's messages
    assert (stats.records, stats.first_seq, stats.last_seq) == (2, 1003, 1052)


def test_an_in_feed_snapshot_closes_the_holes_as_lost_up_to_its_id() -> None:
    tracker = SequenceTracker()
    tracker.restart(BTC, 1000, 1)
    tracker.observe_range(BTC, 1001, 1002, 2)
    tracker.observe_range(BTC, 1006, 1008, 3)  # hole 1003..1005
    tracker.observe_range(BTC, 1009, 1010, 4)
    lost = [Gap(1, BTC, 1003, 1005, 3, 5, LOST, RESUBSCRIBED)]
    # Not received between the last update and the snapshot while a hole was open: lost too.
    lost.append(Gap(2, BTC, 1011, 1012, 5, 5, LOST, RESUBSCRIBED))
    assert tracker.restart(BTC, 1012, 5) == tuple(lost)
    assert tracker.observe_range(BTC, 1013, 1013, 6) == NEW
    stats = tracker.stream_stats(BTC)
    assert stats is not None and stats.state is SyncState.SYNCED and stats.open_gaps == 0


def test_an_in_feed_snapshot_below_the_last_id_starts_a_new_epoch() -> None:
    tracker = SequenceTracker()
    tracker.restart(BTC, 1000, 1)
    tracker.observe_range(BTC, 1001, 1002, 2)
    tracker.observe_range(BTC, 1006, 1006, 3)  # hole 1003..1005
    # The venue renumbered during an outage: the next connection's snapshot is far lower.
    assert tracker.restart(BTC, 40, 4) == (Gap(1, BTC, 1003, 1005, 3, 4, LOST, "venue reset"),)
    assert tracker.observe_range(BTC, 41, 42, 5) == NEW  # news, not duplicates
    assert tracker.observe_range(BTC, 45, 45, 6).opened == (
        Gap(2, BTC, 43, 44, 6, None, OPEN, "seq jump", 1),
    )
    stats = tracker.stream_stats(BTC)
    assert stats is not None and (stats.epoch, stats.first_seq, stats.last_seq) == (1, 42, 45)
    assert stats.records == 4


def test_a_renumbering_is_a_new_epoch_and_loses_only_the_open_holes() -> None:
    tracker = SequenceTracker()
    assert tracker.renumber(BTC, 7, 1) is None  # no baseline yet: this is it
    tracker.observe_range(BTC, 8, 9, 2)
    tracker.observe_range(BTC, 12, 12, 3)  # hole 10..11
    assert tracker.renumber(BTC, 3, 4) == 1
    assert tracker.gaps() == [Gap(1, BTC, 10, 11, 3, 4, LOST, "venue reset")]
    assert tracker.observe_range(BTC, 4, 5, 5) == NEW  # news in the new epoch, no gap
    stats = tracker.stream_stats(BTC)
    assert stats is not None and (stats.epoch, stats.first_seq, stats.last_seq) == (1, 3, 5)


def test_a_shared_sequence_gap_waits_for_a_late_push_or_is_lost_to_a_snapshot() -> None:
    tracker = SequenceTracker()
    usd = StreamKey("level2", "BTC-USD")
    tracker.observe_loose(usd, 4, 1)
    tracker.observe_loose(usd, 9, 2)  # 5..8 were other streams' pushes: no gap here
    assert tracker.gaps() == []
    hole = tracker.suspect(usd, 10, 11, 3, "connection seq jump")
    other = tracker.suspect(usd, 14, 14, 4, "connection seq jump")
    filled = Gap(other.gap_id, usd, 14, 14, 4, 5, FILLED, "connection seq jump")
    assert tracker.resolve(usd, 14, 14, 5, FILLED, "") == (filled,)
    lost = Gap(hole.gap_id, usd, 10, 11, 3, 6, LOST, RESUBSCRIBED)
    assert tracker.resolve(usd, 0, 2**63 - 1, 6, LOST, RESUBSCRIBED) == (lost,)
    stats = tracker.stream_stats(usd)
    assert stats is not None and stats.state is SyncState.SYNCED
    assert (stats.records, stats.first_seq, stats.last_seq) == (2, 4, 9)


def test_a_content_checked_stream_is_broken_until_a_snapshot_and_ignores_disconnects() -> None:
    tracker = SequenceTracker()
    book = StreamKey("book", "BTC/USD")
    tracker.observe_unsequenced(book, 10, checked=True)
    tracker.connection_lost(11)  # the reconnect's snapshot makes it whole: no time gap
    tracker.connection_restored(12)
    tracker.observe_unsequenced(book, 13, checked=True)
    assert tracker.gaps() == []
    gap = tracker.broken(book, 20, "checksum mismatch")
    assert gap == Gap(1, book, None, None, 13, None, OPEN, "checksum mismatch")
    assert tracker.broken(book, 21, "checksum mismatch") is None  # still the same break
    lost = Gap(1, book, None, None, 13, 30, LOST, RESUBSCRIBED)
    assert tracker.mended(book, 30, RESUBSCRIBED) == lost
    assert tracker.mended(book, 31, RESUBSCRIBED) is None
    again = SequenceTracker.from_checkpoint(json.loads(json.dumps(tracker.to_checkpoint())))
    assert again.to_checkpoint() == tracker.to_checkpoint()
