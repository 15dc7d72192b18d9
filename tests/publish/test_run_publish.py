"""``fastfeed run --publish`` with a ``[publish]`` table: the publisher as the recorder's child."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e.harness import Recorder, Simulator

from .helpers import Publisher, count, cursor, ids_of, stored, wait_for
from .nats_servers import Cluster
from .test_collectors import last_lsn, local_ids

CHANNELS = {"depth": ["AAPL.US"], "trade": ["BTC.CC"]}


def test_run_publish_starts_and_stops_its_publisher(tmp_path: Path, nats1: Cluster) -> None:
    data = tmp_path / "data"
    config = tmp_path / "fastfeed.toml"
    config.write_text('[publish]\nstream = "MD"\ncreate_stream = true\nreplicas = 1\n')
    with (
        Simulator(tmp_path, rate=300.0) as sim,
        Recorder(
            tmp_path, data, sim.url, CHANNELS, "--config", str(config), "--publish", nats1.urls
        ) as rec,
    ):
        rec.start()
        rec.until(lambda: count(nats1.urls) >= 500, "the child publishing")
        assert rec.stop() == 0
        found = re.search(r"publisher started \(pid (\d+)\)", rec.log())
        assert found
        with pytest.raises(ProcessLookupError):  # stopped with the recorder, not orphaned
            os.kill(int(found.group(1)), 0)
    # What the child left unacknowledged at stop, a later publisher finishes: exactly once.
    with Publisher(tmp_path, data, nats1.urls) as pub:
        pub.start()
        pub.wait_ready()
        wait_for(lambda: cursor(data).acked_lsn == last_lsn(data), "the rest published")
        assert pub.stop() == 0
    ids = ids_of(stored(nats1.urls))
    assert len(ids) == len(set(ids))
    assert set(ids) == local_ids(data)


def test_bad_publish_table_fails_before_recording(tmp_path: Path) -> None:
    config = tmp_path / "fastfeed.toml"
    config.write_text('[publish]\nnats = "nats://127.0.0.1:4222"\nstraem = "MD"\n')
    rec = Recorder(
        tmp_path, tmp_path / "data", "ws://127.0.0.1:1", CHANNELS, "--config", str(config)
    )
    rec.start()
    assert rec.wait() == 2
    assert "unknown key 'straem'" in rec.log()
    assert not (tmp_path / "data").exists()
