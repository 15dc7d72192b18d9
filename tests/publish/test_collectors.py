"""Two collectors recording the same venue into one stream: each message stored once."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from fastfeed.journal import crc32c, read_journal
from fastfeed.publish.subjects import message_id
from tests.e2e.harness import Recorder, Simulator, export

from .helpers import Publisher, count, cursor, ids_of, stored, wait_for
from .nats_servers import Cluster

CHANNELS = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]}


def last_lsn(data: Path) -> int:
    lsn = 0
    if not (data / "journal").is_dir():
        return lsn
    for record in read_journal(data / "journal"):
        lsn = record.lsn
    return lsn


def local_ids(data: Path) -> set[str]:
    ids = set()
    for rows in export(data).values():
        for row in rows:
            frame = row["frame"].encode()
            ids.add(
                message_id(
                    row["venue"],
                    row["channel"],
                    row["symbol"],
                    row["seq"],
                    crc32c(frame),
                    len(frame),
                )
            )
    return ids


def test_two_collectors_of_one_venue_store_each_message_once(
    tmp_path: Path, nats1: Cluster
) -> None:
    dirs = {name: tmp_path / name for name in ("a", "b")}
    for d in dirs.values():
        d.mkdir()
    with Simulator(tmp_path, rate=400.0) as sim:
        recorders = {n: Recorder(d, d / "data", sim.url, CHANNELS) for n, d in dirs.items()}
        publishers = {
            n: Publisher(d, d / "data", nats1.urls, "--create-stream", "--replicas", "1")
            for n, d in dirs.items()
        }
        try:
            for rec in recorders.values():
                rec.start()
            for name, rec in recorders.items():
                rec.until(lambda d=dirs[name]: last_lsn(d / "data") > 0, f"{name} journaling")
            for pub in publishers.values():
                pub.start()
            wait_for(lambda: count(nats1.urls) >= 3_000, "both publishing a while")
            for rec in recorders.values():
                assert rec.stop() == 0
            ends = {n: last_lsn(d / "data") for n, d in dirs.items()}
            for name, pub in publishers.items():
                wait_for(
                    lambda n=name: cursor(dirs[n] / "data").acked_lsn == ends[n],
                    f"{name} published all it recorded",
                )
                assert pub.stop() == 0
        finally:
            for obj in [*recorders.values(), *publishers.values()]:
                obj.__exit__(None, None, None)
    ids = ids_of(stored(nats1.urls))
    doubled = [i for i, n in Counter(ids).items() if n > 1]
    assert not doubled, f"stored twice: {doubled[:3]}"
    a, b = local_ids(dirs["a"] / "data"), local_ids(dirs["b"] / "data")
    assert a & b, "the collectors recorded no message in common: nothing was tested"
    assert set(ids) == a | b
    # The server, not luck, kept them single: both publishers had the messages they share
    # acknowledged as stored, and the stream holds fewer than the two counts together.
    logs = publishers["a"].log() + publishers["b"].log()
    assert sum(int(n) for n in re.findall(r"(\d+) acks", logs)) > len(ids)
