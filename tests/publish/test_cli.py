"""Bad input to ``publish`` and ``export --from-nats``: one line, no traceback, no secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastfeed.datadir import prepare_data_dir
from tests.e2e.harness import REPO, cli
from tests.recording import build

from .helpers import STREAM, create_stream
from .nats_servers import Cluster, free_port


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["publish", "export"])
def test_without_nats_py_says_how_to_get_it(tmp_path: Path, command: str) -> None:
    data = prepare_data_dir(tmp_path / "data")
    (data / "journal").mkdir()
    argv = (
        ["publish", "--data-dir", str(data), "--nats", "nats://127.0.0.1:1"]
        if command == "publish"
        else ["export", "--from-nats", "nats://127.0.0.1:1"]
    )
    # What a one-file app without the publish extra sees: nats cannot be imported.
    code = (
        "import sys; sys.modules['nats'] = None; from fastfeed.cli import main;"
        f" sys.exit(main({argv!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "pip install 'fastfeed[publish]'" in one_line(result)


def test_bad_url_and_bad_stream_name(tmp_path: Path) -> None:
    data = prepare_data_dir(tmp_path / "data")
    (data / "journal").mkdir()
    bad_url = cli("publish", "--data-dir", str(data), "--nats", "http://x:1")
    assert bad_url.returncode == 2
    assert "--nats" in one_line(bad_url)
    bad_name = cli(
        "publish", "--data-dir", str(data), "--nats", "nats://127.0.0.1:1", "--stream", "a.b"
    )
    assert bad_name.returncode == 2
    assert "--stream" in one_line(bad_name)


def test_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    data = prepare_data_dir(tmp_path / "data")
    (data / "journal").mkdir()
    url = f"nats://feeder:hunter2-secret@127.0.0.1:{free_port()}"
    for result in (
        cli("publish", "--data-dir", str(data), "--nats", url),
        cli("export", "--from-nats", url),
    ):
        assert result.returncode == 1
        assert "cannot connect" in one_line(result)
        assert "hunter2" not in result.stderr + result.stdout


def test_no_journal_yet(tmp_path: Path) -> None:
    data = prepare_data_dir(tmp_path / "data")
    result = cli("publish", "--data-dir", str(data), "--nats", "nats://127.0.0.1:1")
    assert result.returncode == 2
    assert "start the recorder first" in one_line(result)


def test_stream_without_batched_publishes_is_refused(tmp_path: Path, nats1: Cluster) -> None:
    data = build(tmp_path / "data", {("trade", "BTC.CC"): 10})
    create_stream(nats1.urls, batched=False)  # made by hand, not by --create-stream
    result = cli("publish", "--data-dir", str(data), "--nats", nats1.urls, "--stream", STREAM)
    assert result.returncode == 1
    assert "allow_batched" in one_line(result)
    assert not (data / "publish").exists(), "refused before any cursor was written"
