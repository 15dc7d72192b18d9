"""Exactly once into JetStream whatever stops: the publisher, the window, the stream itself."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

from fastfeed.publish.cursor import cursor_path

from .helpers import (
    STREAM,
    LiveJournal,
    Publisher,
    count,
    create_stream,
    cursor,
    delete_stream,
    expected_ids,
    ids_of,
    publisher_up,
    stored,
    wait_for,
)
from .nats_servers import Cluster

STREAMS = [("depth", "AAPL.US"), ("trade", "BTC.CC"), ("ticker", "TSLA.US")]


def assert_exact(urls: str, want: set[str]) -> None:
    ids = ids_of(stored(urls))
    doubled = [i for i, n in Counter(ids).items() if n > 1]
    assert not doubled, f"{len(doubled)} ids stored twice, e.g. {doubled[:3]}"
    assert set(ids) == want, f"missing {len(want - set(ids))}, extra {len(set(ids) - want)}"


def test_sigkill_mid_run_then_restart_is_exactly_once(tmp_path: Path, nats1: Cluster) -> None:
    data = tmp_path / "data"
    live = LiveJournal(data, STREAMS, 30_000, rate=15_000)
    with Publisher(tmp_path, data, nats1.urls, "--create-stream", "--replicas", "1") as pub:
        pub.start()
        wait_for(lambda: publisher_up(data), "the publisher up")
        live.start()
        wait_for(lambda: count(nats1.urls) >= 8_000, "a quarter published")
        wait_for(lambda: cursor(data).acked_lsn > 0, "a first cursor")
        pub.kill()
        before = cursor(data).acked_lsn
        assert 0 < before < 30_000, "killed mid-run"
        pub.start()
        live.join()
        wait_for(lambda: cursor(data).acked_lsn == 30_000, "the restarted publisher done")
        assert pub.stop() == 0
    assert cursor(data).acked_lsn >= before
    assert_exact(nats1.urls, expected_ids(live.frames))


def test_reconcile_keeps_it_exact_past_the_duplicate_window(tmp_path: Path, nats1: Cluster) -> None:
    window = 0.2
    create_stream(nats1.urls, duplicate_window=window)
    data = tmp_path / "data"
    live = LiveJournal(data, STREAMS, 20_000, rate=20_000).start()
    saved = tmp_path / "old.cursor"
    with Publisher(tmp_path, data, nats1.urls) as pub:
        pub.start()
        # A cursor saved early stands for one that lagged its acks when the publisher died:
        # everything stored after it is past the cursor, and past the window at restart.
        wait_for(lambda: cursor(data).acked_lsn > 0, "a first cursor")
        shutil.copy(cursor_path(data, STREAM), saved)
        wait_for(lambda: count(nats1.urls) >= 10_000, "half published")
        pub.kill()
        killed_at = time.monotonic()
        shutil.copy(saved, cursor_path(data, STREAM))
        time.sleep(max(0.0, killed_at + 3 * window - time.monotonic()))  # outlive the window
        pub.start()
        live.join()
        wait_for(lambda: cursor(data).acked_lsn == 20_000, "the restarted publisher done")
        assert pub.stop() == 0
        log = pub.log()
    assert "ids stored past the cursor" in log
    assert " 0 ids stored past the cursor" not in log
    assert_exact(nats1.urls, expected_ids(live.frames))


def test_recreated_stream_gets_everything_again(tmp_path: Path, nats1: Cluster) -> None:
    data = tmp_path / "data"
    live = LiveJournal(data, STREAMS, 6_000, rate=1e9).start()
    live.join()
    with Publisher(tmp_path, data, nats1.urls, "--create-stream", "--replicas", "1") as pub:
        pub.start()
        wait_for(lambda: cursor(data).acked_lsn == 6_000, "all published")
        assert pub.stop() == 0
        delete_stream(nats1.urls)
        create_stream(nats1.urls)
        pub.start()
        wait_for(lambda: count(nats1.urls) >= 6_000, "everything published again")
        wait_for(lambda: cursor(data).acked_lsn == 6_000, "the cursor level again")
        assert pub.stop() == 0
        assert "was recreated" in pub.log()
    assert_exact(nats1.urls, expected_ids(live.frames))


def test_a_nats_outage_only_delays_publishing(tmp_path: Path, nats1: Cluster) -> None:
    data = tmp_path / "data"
    live = LiveJournal(data, STREAMS, 12_000, rate=10_000)
    server = nats1.servers[0]
    with Publisher(tmp_path, data, nats1.urls, "--create-stream", "--replicas", "1") as pub:
        pub.start()
        wait_for(lambda: publisher_up(data), "the publisher up")
        live.start()
        wait_for(lambda: count(nats1.urls) >= 3_000, "publishing under way")
        server.kill()  # the whole "cluster" gone: nothing can be acknowledged meanwhile
        held = cursor(data).acked_lsn
        live.join()  # the recorder keeps journaling; the publisher only falls behind
        assert cursor(data).acked_lsn < 12_000
        nats1.restart(server)
        wait_for(lambda: cursor(data).acked_lsn == 12_000, "caught up after the outage")
        assert pub.stop() == 0
        assert "reconnected to NATS" in pub.log()
    assert cursor(data).acked_lsn >= held
    assert_exact(nats1.urls, expected_ids(live.frames))
