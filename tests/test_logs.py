"""Logging: secrets never reach the output, JSON lines parse."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from fastfeed.logs import setup_logging


@pytest.fixture(autouse=True)
def restore_root_handlers() -> Iterator[None]:
    saved = logging.getLogger().handlers[:]
    yield
    logging.getLogger().handlers[:] = saved


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secret_is_redacted_from_message_args_and_exceptions(
    capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    setup_logging(fmt, "info", secrets=["k3y-s3cret"])
    log = logging.getLogger("picows.client")
    log.info("redirect to wss://x/v1/realtime?api_key=%s", "k3y-s3cret")
    try:
        raise ValueError("bad url wss://x?api_key=k3y-s3cret")
    except ValueError:
        log.exception("connect failed")
    out = capsys.readouterr().err
    assert "k3y-s3cret" not in out
    assert out.count("***") >= 2


def test_json_lines_parse(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("json", "info")
    logging.getLogger("fastfeed.x").warning("hello %d", 5, extra={"stream": "depth:A"})
    doc = orjson.loads(capsys.readouterr().err.strip())
    assert doc["msg"] == "hello 5"
    assert doc["level"] == "warning"
    assert doc["stream"] == "depth:A"


def test_a_short_secret_is_redacted_where_it_stands_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("text", "info", secrets=["key"])
    logging.getLogger("fastfeed.x").info("GET /v1/realtime?api_key=key&x=monkey key")
    out = capsys.readouterr().err
    # The value is replaced; the parameter's name and words that merely contain it are not.
    assert "api_key=***&x=monkey ***" in out
