"""``export --from-nats`` writes the same bytes as the local ``export`` of what was published."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import cli
from tests.recording import build

from .helpers import STREAM, Publisher, cursor, wait_for
from .nats_servers import Cluster

STREAMS = {("depth", "AAPL.US"): 700, ("trade", "BTC.CC"): 900, ("ticker", "TSLA.US"): 400}


@pytest.fixture
def published(tmp_path: Path, nats1: Cluster) -> tuple[Path, str]:
    """A recorded data dir (one real hole in a stream) published whole into a stream."""
    data = build(tmp_path / "data", STREAMS, skip={("trade", "BTC.CC"): 300})
    total = sum(STREAMS.values()) - 1
    with Publisher(tmp_path, data, nats1.urls, "--create-stream", "--replicas", "1") as pub:
        pub.start()
        wait_for(lambda: cursor(data).acked_lsn == total, "everything published")
        assert pub.stop() == 0
    return data, nats1.urls


@pytest.mark.parametrize(
    "flags",
    [
        ("--format", "jsonl"),
        ("--format", "csv"),
        ("--format", "jsonl", "--channel", "trade"),
        ("--format", "csv", "--symbol", "AAPL.US", "--from", "1732406400500000000"),
    ],
)
def test_export_from_nats_equals_local_export(
    published: tuple[Path, str], flags: tuple[str, ...]
) -> None:
    data, urls = published
    local = cli("export", "--data-dir", str(data), *flags)
    remote = cli("export", "--from-nats", urls, "--stream", STREAM, *flags)
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    assert local.stdout.count("\n") > 100
    assert remote.stdout == local.stdout


def test_export_from_nats_parquet_equals_local(published: tuple[Path, str], tmp_path: Path) -> None:
    data, urls = published
    a, b = tmp_path / "local.parquet", tmp_path / "nats.parquet"
    local = cli("export", "--data-dir", str(data), "--format", "parquet", "-o", str(a))
    assert local.returncode == 0, local.stderr
    remote = cli("export", "--from-nats", urls, "--format", "parquet", "-o", str(b))
    assert remote.returncode == 0, remote.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(b).equals(pq.read_table(a))


def test_export_from_nats_missing_stream_is_one_line(nats1: Cluster) -> None:
    result = cli("export", "--from-nats", nats1.urls, "--stream", "NOPE")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "NOPE" in result.stderr
    assert "Traceback" not in result.stderr
