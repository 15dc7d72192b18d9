"""A 3-node cluster: SIGKILL the stream's leader mid-run and restart it; nothing lost or doubled."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import cli

from .helpers import (
    STREAM,
    LiveJournal,
    Publisher,
    count,
    cursor,
    expected_ids,
    ids_of,
    publisher_up,
    replicas_current,
    stored,
    stream_leader,
    wait_for,
)
from .nats_servers import Cluster

STREAMS = [("depth", "AAPL.US"), ("trade", "BTC.CC"), ("ticker", "TSLA.US")]
TOTAL = 24_000


def test_stream_leader_killed_mid_run(tmp_path: Path, nats3: Cluster) -> None:
    data = tmp_path / "data"
    live = LiveJournal(data, STREAMS, TOTAL, rate=4_000)
    with Publisher(tmp_path, data, nats3.urls, "--create-stream") as pub:  # R3
        pub.start()
        wait_for(lambda: publisher_up(data), "the publisher up")
        live.start()
        wait_for(lambda: count(nats3.urls) >= 4_000, "publishing under way")
        leader = nats3.server(wait_for(lambda: stream_leader(nats3.urls), "a stream leader"))
        leader.kill()
        assert count(nats3.urls) < TOTAL, "killed mid-run"
        wait_for(lambda: (stream_leader(nats3.urls) or leader.name) != leader.name, "a new leader")
        nats3.restart(leader)
        live.join()
        wait_for(lambda: cursor(data).acked_lsn == TOTAL, "everything acknowledged")
        assert pub.stop() == 0
        log = pub.log()
    wait_for(lambda: replicas_current(nats3.urls), "the restarted node caught up")
    ids = ids_of(stored(nats3.urls))
    assert len(ids) == len(set(ids)), "an id stored twice"
    assert set(ids) == expected_ids(live.frames)
    # A consumer reading it back sees each (stream, epoch, seq) once, in order.
    local = cli("export", "--data-dir", str(data))
    remote = cli("export", "--from-nats", nats3.urls, "--stream", STREAM)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    assert remote.stdout == local.stdout
    assert "Traceback" not in log
