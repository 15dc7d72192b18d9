"""Subjects, Msg-Ids and headers: reversible, collector-independent, header-safe."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fastfeed.derive.streams import Gap, GapState, StreamKey
from fastfeed.journal import crc32c
from fastfeed.publish import subjects as s
from fastfeed.sim.content import StreamGenerator


@given(st.text(min_size=1))
def test_escape_is_reversible_and_a_single_safe_token(token: str) -> None:
    escaped = s.escape(token)
    assert s.unescape(escaped) == token.encode(errors="replace").decode(errors="replace")
    assert not set(escaped) & set(". *>\t\r\n")


def test_subject_round_trip_with_dotted_symbol() -> None:
    subject = s.subject("md", "tickdb", "depth", "AAPL.US")
    assert subject == "md.tickdb.depth.AAPL%2EUS"
    assert s.parse_subject(subject) == s.SubjectParts("tickdb", "depth", "AAPL.US")
    assert s.parse_subject("md.a.b") is None


def test_message_id_is_the_same_for_two_collectors_and_changes_with_the_frame() -> None:
    # Two collectors receive the same bytes for the same (stream, seq): the same id.
    a = StreamGenerator(1, "trade", "BTC.CC").next()
    b = StreamGenerator(1, "trade", "BTC.CC").next()
    id_a = s.message_id("tickdb", "trade", "BTC.CC", 1, crc32c(a), len(a))
    assert id_a == s.message_id("tickdb", "trade", "BTC.CC", 1, crc32c(b), len(b))
    # A venue restart that numbers the stream from 1 again sends another frame as seq 1.
    other = StreamGenerator(2, "trade", "BTC.CC").next()
    assert id_a != s.message_id("tickdb", "trade", "BTC.CC", 1, crc32c(other), len(other))
    # Without a seq the length joins the CRC.
    assert s.message_id("tickdb", "ticker", "X", None, 7, 10) != s.message_id(
        "tickdb", "ticker", "X", None, 7, 11
    )


def test_message_id_cannot_break_a_header_line() -> None:
    msg_id = s.message_id("tickdb", "depth", "EVIL\r\nX-Injected: 1", 5, 0, 3)
    assert "\r" not in msg_id and "\n" not in msg_id


def test_gap_id_is_its_content_not_the_ledger_number() -> None:
    key = StreamKey("trade", "BTC.CC")
    one = Gap(1, key, 10, 12, 0, None, GapState.OPEN, "seq jump")
    other_collector = Gap(7, key, 10, 12, 0, None, GapState.OPEN, "seq jump")
    filled = Gap(1, key, 10, 12, 0, 5, GapState.FILLED, "seq jump")
    assert s.gap_id("tickdb", one) == s.gap_id("tickdb", other_collector)
    assert s.gap_id("tickdb", one) != s.gap_id("tickdb", filled)
