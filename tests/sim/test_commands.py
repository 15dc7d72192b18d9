"""The simulator's command protocol decided without a server: every refusal and what it echoes."""

from __future__ import annotations

import orjson
import pytest

from fastfeed.sim.commands import Error, Ping, Subscribe, Unsubscribe, interpret, read_command
from fastfeed.venues.tickdb import CODE_BAD_REQUEST, CODE_UNKNOWN_NAME


def decide(doc: object, *, plain: bool = False) -> object:
    parsed = read_command(orjson.dumps(doc))
    if isinstance(parsed, Error):
        return parsed
    return interpret(*parsed, plain=plain, reject_symbols={"NOPE.US"}, reject_code=4040)


def test_the_envelope_must_be_an_object_with_a_string_cmd() -> None:
    assert read_command(b"not json") == Error("error", CODE_BAD_REQUEST, "expected a JSON object")
    refused = Error("error", CODE_BAD_REQUEST, 'expected an object with a string "cmd"')
    assert read_command(b"[1]") == refused
    assert read_command(b'{"cmd": 5}') == refused


def test_commands_and_their_refusals() -> None:
    echo = {"channel": "depth", "symbols": ["AAPL.US"]}
    assert decide({"cmd": "ping"}) == Ping()
    assert decide({"cmd": "subscribe", "data": echo}) == Subscribe("depth", ["AAPL.US"], {}, echo)
    assert decide({"cmd": "unsubscribe", "data": echo}) == Unsubscribe("depth", ["AAPL.US"], echo)
    resume = {**echo, "resume": {"AAPL.US": 7}}
    assert decide({"cmd": "subscribe", "data": resume}) == Subscribe(
        "depth", ["AAPL.US"], {"AAPL.US": 7}, echo
    )
    # Plain TickDB has no resume: the field is ignored like any unknown one.
    assert decide({"cmd": "subscribe", "data": resume}, plain=True) == Subscribe(
        "depth", ["AAPL.US"], {}, echo
    )
    assert decide({"cmd": "dance"}) == Error("error", CODE_BAD_REQUEST, "unknown command 'dance'")
    assert decide({"cmd": "subscribe", "data": 1}) == Error(
        "subscribe", CODE_BAD_REQUEST, 'expected an object at "data"'
    )


@pytest.mark.parametrize(
    ("data", "code", "message", "echoed"),
    [
        ({"channel": "depth", "symbols": []}, CODE_BAD_REQUEST, "non-empty", None),
        ({"channel": "quotes", "symbols": ["A"]}, CODE_UNKNOWN_NAME, "Unknown channel", "quotes"),
        ({"channel": "depth", "symbols": ["a b"]}, CODE_UNKNOWN_NAME, "Unknown symbol", "a b"),
        ({"channel": "depth", "symbols": ["NOPE.US"]}, 4040, "Subscription rejected", "NOPE.US"),
        (
            {"channel": "depth", "symbols": ["A"], "resume": {"A": 0}},
            CODE_BAD_REQUEST,
            '"resume"',
            "A",
        ),
    ],
)
def test_a_refused_subscribe_says_why_and_what(
    data: dict[str, object], code: int, message: str, echoed: str | None
) -> None:
    outcome = decide({"cmd": "subscribe", "data": data})
    assert isinstance(outcome, Error)
    assert (outcome.cmd, outcome.code) == ("subscribe", code)
    assert message in outcome.message
    if echoed is not None:
        assert echoed in orjson.dumps(outcome.doc()["data"]).decode()
