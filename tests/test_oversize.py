"""The search for the stream whose resume meets a frame over the size limit (recorder/oversize)."""

from __future__ import annotations

from typing import Any, cast

import orjson

from fastfeed.derive.pipeline import Actions, Pipeline
from fastfeed.derive.streams import StreamKey
from fastfeed.journal import RecordKind
from fastfeed.recorder.connection import Connection
from fastfeed.recorder.feed import Feed
from fastfeed.recorder.oversize import Found, GiveUp, OversizeSearch, Phase
from fastfeed.recorder.session import Session
from fastfeed.venues.tickdb import TickDBAdapter

__all__: list[str] = []

KEYS = [StreamKey("depth", f"S{i:02d}") for i in range(16)]


class Venue:
    """Streams' resume points on a venue where ``culprit`` is stuck at ``at``. A connection
    sends the streams in key order: those after the culprit never arrive before its frame."""

    def __init__(self, culprit: StreamKey, at: int = 50) -> None:
        self.culprit = culprit
        self.points = {k: 40 + i for i, k in enumerate(KEYS)}
        self.points[culprit] = at
        self.reached: set[StreamKey] = set()

    def passed(self, key: StreamKey, seq: int) -> bool:
        return key in self.reached

    def connection(self, search: OversizeSearch) -> dict[StreamKey, int]:
        """One connection until the culprit's frame ends it; returns the resumes it asked."""
        asked = {k: r for k, r in self.points.items() if search.allows(k)}
        while self.culprit not in asked:  # each batch of a probe passes: the next is sent
            self.reached = set(asked)
            verdict, released = search.progress(self.passed)
            assert verdict is None and released  # the culprit is never given up
            asked |= {k: self.points[k] for k in released}
        self.reached = {k for k in asked if k < self.culprit}
        return asked


def find(culprit: StreamKey) -> tuple[Found | GiveUp | None, int]:
    venue = Venue(culprit)
    search = OversizeSearch()
    verdict = None
    connections = 0
    while verdict is None:
        asked = venue.connection(search)
        connections += 1
        verdict = search.oversized(17_000_000, asked, venue.passed)
        assert connections <= 2 + len(KEYS).bit_length()
    return verdict, connections


def test_the_culprit_is_found_at_its_resume_point_in_about_log2_connections() -> None:
    for culprit in (KEYS[0], KEYS[7], KEYS[15]):
        verdict, connections = find(culprit)
        assert verdict == Found(culprit, 50, 17_000_000)
        # the first, the confirming retry, then a probe per halving of the suspects
        assert connections <= 2 + (16 - KEYS.index(culprit)).bit_length()


def test_a_second_hit_on_the_same_resume_point_with_one_suspect_is_found_at_once() -> None:
    search = OversizeSearch()
    key = KEYS[3]
    assert search.oversized(None, {key: 9, KEYS[4]: 5}, lambda k, s: k != key) is None
    assert search.phase is Phase.RETRY
    assert search.oversized(20_000_000, {key: 9, KEYS[4]: 6}, lambda k, s: k != key) == Found(
        key, 9, 20_000_000
    )
    assert search.phase is Phase.IDLE and search.allows(KEYS[4])


def test_a_frame_that_is_not_resent_gives_up_with_its_size() -> None:
    search = OversizeSearch()
    assert search.oversized(17_000_000, {}, lambda k, s: False) == GiveUp(17_000_000)
    assert search.oversized(None, {KEYS[0]: 3}, lambda k, s: False) is None
    assert search.progress(lambda k, s: False) == (None, [])
    assert search.progress(lambda k, s: True) == (GiveUp(None), [])
    assert search.phase is Phase.IDLE


def test_a_different_resume_point_is_a_new_incident_not_a_confirmation() -> None:
    search = OversizeSearch()
    assert search.oversized(None, {KEYS[0]: 3}, lambda k, s: False) is None
    assert search.oversized(None, {KEYS[0]: 4}, lambda k, s: False) is None  # it moved on
    assert search.phase is Phase.RETRY
    assert search.oversized(None, {KEYS[0]: 4}, lambda k, s: False) == Found(KEYS[0], 4, None)


def test_a_probe_withholds_only_the_suspects_outside_its_batch() -> None:
    search = OversizeSearch()
    suspects = {k: 7 for k in KEYS[:4]}
    search.oversized(None, suspects | {KEYS[9]: 2}, lambda k, s: k == KEYS[9])
    search.oversized(None, suspects, lambda k, s: False)
    assert search.phase is Phase.PROBE
    assert [k for k in KEYS if search.allows(k)] == KEYS[:2] + KEYS[4:]
    verdict, released = search.progress(lambda k, s: True)
    assert (verdict, released) == (None, [KEYS[2]])
    assert search.progress(lambda k, s: True) == (None, [KEYS[3]])
    assert search.progress(lambda k, s: True) == (GiveUp(None), [])
    assert all(search.allows(k) for k in KEYS)


class _Feed:
    """The journal side of a session: each append gets the next LSN."""

    def __init__(self) -> None:
        self.records: list[tuple[int, bytes]] = []

    def append(self, kind: int, payload: bytes) -> int:
        self.records.append((kind, payload))
        return len(self.records)

    def wake_applier(self) -> None: ...


class _Pipeline:
    """Nothing derived yet, no stream known: every subscribe is live."""

    derived_lsn = 0

    def resume_point(self, key: StreamKey) -> int | None:
        return None


class _Connection:
    connected = True

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, payload: bytes) -> bool:
        self.sent.append(orjson.loads(payload))
        return True


def test_a_sighup_while_subscribes_wait_on_a_verdict_sends_the_new_set_once_after_it() -> None:
    feed, pipeline = _Feed(), _Pipeline()
    session = Session(
        TickDBAdapter(),
        cast(Feed, feed),
        cast(Pipeline, pipeline),
        {"depth": ["A.US", "B.US"]},
        lambda error: None,
    )
    session.started = True
    session.on_oversized(None)
    session.on_disconnected("close 1009")
    conn = _Connection()
    session.connection = cast(Connection, conn)
    session.on_connected(cast(Connection, conn))  # the disconnect is not derived yet: waits
    session.change_subscriptions({"depth": ["A.US", "C.US"]})
    assert conn.sent == []  # nothing asked before the verdict (C.US would look like a suspect)
    pipeline.derived_lsn = len(feed.records)
    session.on_actions(Actions())
    asked = [(cmd["cmd"], cmd["data"]["symbols"]) for cmd in conn.sent]
    assert asked == [("subscribe", ["A.US", "C.US"])]


class _Resumed:
    """Every stream known at a resume point; everything journaled is derived at once."""

    def __init__(self, feed: _Feed, points: dict[str, int]) -> None:
        self._feed = feed
        self.points = points

    @property
    def derived_lsn(self) -> int:
        return len(self._feed.records)

    def resume_point(self, key: StreamKey) -> int | None:
        return self.points.get(key.symbol)

    def stream_stats(self, key: StreamKey) -> None:
        return None  # no ack: a stream passes its resume point only by receiving it


def test_a_frame_met_past_the_resume_point_is_found_not_given_up() -> None:
    # Every connection but a recorder's first resumes its streams. A stream that received its
    # resume point and went on may well hold the frame that then ended the connection (its
    # next seq): it is a suspect there, as a stream subscribed live is, not cleared of it.
    feed = _Feed()
    pipeline = _Resumed(feed, {"A.US": 10, "B.US": 20})
    session = Session(
        TickDBAdapter(),
        cast(Feed, feed),
        cast(Pipeline, pipeline),
        {"depth": ["A.US", "B.US"]},
        lambda error: None,
    )
    session.started = True
    conn = _Connection()
    session.connection = cast(Connection, conn)

    def connect() -> dict[str, int]:
        """A connection comes up: the resume points its subscribe asks for."""
        conn.sent = []
        session.on_connected(cast(Connection, conn))
        return {s: r for cmd in conn.sent for s, r in cmd["data"]["resume"].items()}

    def ended_on_the_frame(reached: dict[str, int]) -> None:
        """The streams reached these points, then the frame over the limit came."""
        pipeline.points = reached
        session.on_oversized(20_000_000)
        session.on_disconnected("close 1009")

    assert connect() == {"A.US": 10, "B.US": 20}
    ended_on_the_frame({"A.US": 15, "B.US": 25})  # both went past where they resumed
    assert connect() == {"A.US": 15, "B.US": 25}  # a retry, both suspects
    ended_on_the_frame({"A.US": 15, "B.US": 31})  # A stuck where the frame was
    assert connect() == {"A.US": 16, "B.US": 31}  # found: A skips seq 15
    markers = [orjson.loads(p) for kind, p in feed.records if kind == RecordKind.GAP]
    assert markers == [
        {"event": "oversized", "size": 20_000_000, "channel": "depth", "symbol": "A.US", "seq": 15}
    ]


def test_no_batch_is_released_while_a_frame_over_the_limit_awaits_its_verdict() -> None:
    feed = _Feed()
    symbols = ["A.US", "B.US", "C.US", "D.US"]
    pipeline = _Resumed(feed, {s: 10 * (i + 1) for i, s in enumerate(symbols)})
    session = Session(
        TickDBAdapter(),
        cast(Feed, feed),
        cast(Pipeline, pipeline),
        {"depth": symbols},
        lambda error: None,
    )
    session.started = True
    conn = _Connection()
    session.connection = cast(Connection, conn)
    for _ in range(2):  # the first hit, then the retry: no stream passed where it resumed
        session.on_connected(cast(Connection, conn))
        session.on_oversized(None)
        session.on_disconnected("close 1009")
    conn.sent = []
    session.on_connected(cast(Connection, conn))  # a probe of half the suspects
    assert [cmd["data"]["symbols"] for cmd in conn.sent] == [["A.US", "B.US"]]
    # The probe's batch goes past where it resumed, but its connection has just ended on a
    # frame over the limit (it is still up until picows reports the disconnect): the next
    # half waits for that frame's verdict rather than being asked on a closing connection.
    conn.sent = []
    pipeline.points |= {"A.US": 11, "B.US": 21}
    session.on_oversized(None)
    session.on_actions(Actions())
    assert conn.sent == []
