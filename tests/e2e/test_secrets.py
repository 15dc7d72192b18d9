"""The API key reaches the venue and nowhere else: not on disk, not in any output, not in ps."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import SECRET, JournalWatch, Recorder, Simulator, cli, grep_secret

__all__: list[str] = []

CHANNELS = {"depth": ["AAPL.US"], "trade": ["BTC.CC"]}
# The simulator takes only SECRET, so recording at all proves the key was sent; the faults
# drive the logging of refused, dropped and garbled connections, where URLs get printed.
SIM_OPTIONS = (
    "--api-key",
    SECRET,
    "--fault-refuse-connections",
    "1",
    "--fault-abort-after",
    "500",
    "--fault-garbage-rate",
    "0.01",
    "--fault-garbage-kinds",
    "text,shape",
    "--fault-connections",
    "1",
)


@pytest.fixture
def sim_with_key(tmp_path: Path) -> Iterator[Simulator]:
    """A simulator that accepts only SECRET."""
    with Simulator(tmp_path, "--api-key", SECRET) as server:
        yield server


def read_outputs(data_dir: Path) -> list[bytes]:
    """Everything the read-only commands print about ``data_dir``, in every format."""
    d = str(data_dir)
    runs = [
        cli("status", "--data-dir", d),
        cli("status", "--data-dir", d, "--format", "json"),
        cli("gaps", "--data-dir", d),
        cli("gaps", "--data-dir", d, "--format", "json"),
        cli("export", "--data-dir", d),
    ]
    assert [r.returncode for r in runs] == [0] * len(runs)
    return [(r.stdout + r.stderr).encode() for r in runs]


@pytest.mark.parametrize(("source", "log_format"), [("env", "json"), ("file", "text")])
def test_the_key_is_nowhere_but_on_the_wire(
    source: str, log_format: str, tmp_path: Path, data_dir: Path
) -> None:
    key_file = tmp_path / "tickdb.key"
    key_file.write_text(SECRET + "\n")
    key_file.chmod(0o600)
    options = ["--log-level", "debug"]
    if source == "file":
        options += ["--api-key-file", str(key_file)]
    watch = JournalWatch(data_dir / "journal")
    with (
        Simulator(tmp_path, *SIM_OPTIONS) as sim,
        Recorder(
            tmp_path,
            data_dir,
            sim.url,
            CHANNELS,
            *options,
            key=SECRET if source == "env" else None,
            log_format=log_format,
        ) as rec,
    ):
        rec.start()
        rec.until(lambda: watch.poll().connected >= 2, "a reconnect after the abort")
        then = watch.inbound
        rec.until(lambda: watch.poll().inbound >= then + 500, "recording on the new connection")
        assert rec.proc is not None
        cmdline = Path(f"/proc/{rec.proc.pid}/cmdline").read_bytes()
        assert rec.stop(signal.SIGTERM) == 0
    assert watch.garbage > 0
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.parent.name == "journal" for p in files) and data_dir / "fastfeed.db" in files
    # The check itself finds the key where it is, so a zero below is a real zero.
    assert grep_secret(SECRET.encode(), [key_file]) == [str(key_file)]
    printed = [cmdline, *read_outputs(data_dir)]
    assert grep_secret(SECRET.encode(), [*files, *rec.outputs], printed) == []
    assert "***" in rec.log()  # the redacted URL was logged, so the filter had work to do


def test_a_refused_key_stops_the_recorder_without_printing_it(
    sim_with_key: Simulator, tmp_path: Path, data_dir: Path
) -> None:
    wrong = "sk-e2e-Wr0ngKeyXy5Tq1"
    with Recorder(tmp_path, data_dir, sim_with_key.url, CHANNELS, key=wrong) as rec:
        rec.start()
        assert rec.wait() == 1
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert grep_secret(wrong.encode(), [*files, *rec.outputs], read_outputs(data_dir)) == []
    assert "1001" in rec.log()


@pytest.mark.parametrize(
    "endpoint",
    [
        "ws://127.0.0.1:1/v1/realtime#frag",  # picows' URL error would carry the full URL
        "ws:///v1/realtime",  # no host
        "ws://127.0.0.1:99999/v1/realtime",  # port out of range
    ],
)
def test_an_unusable_endpoint_is_refused_before_the_key_is_used(
    endpoint: str, tmp_path: Path, data_dir: Path
) -> None:
    with Recorder(tmp_path, data_dir, endpoint, CHANNELS) as rec:
        rec.start()
        assert rec.wait() == 2
    assert rec.log().count("\n") == 1 and "bad endpoint" in rec.log()
    files = [p for p in data_dir.rglob("*") if p.is_file()] if data_dir.exists() else []
    assert grep_secret(SECRET.encode(), [*files, *rec.outputs]) == []
