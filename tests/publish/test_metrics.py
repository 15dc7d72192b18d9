"""``publish --metrics``: lag and counters on /metrics, /healthz failing when NATS is gone."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

from tests.recording import build

from .helpers import Publisher, cursor, wait_for
from .nats_servers import Cluster, free_port


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def metric(text: str, name: str) -> float:
    found = re.search(rf"^fastfeed_publish_{name}(?:_total)? (\S+)$", text, re.MULTILINE)
    assert found, f"no {name} in {text[:500]}"
    return float(found.group(1))


def test_metrics_and_health(tmp_path: Path, nats1: Cluster) -> None:
    data = build(tmp_path / "data", {("trade", "BTC.CC"): 500, ("depth", "AAPL.US"): 500})
    port = free_port()
    with Publisher(
        tmp_path, data, nats1.urls, "--create-stream", "--replicas", "1", "--metrics", str(port)
    ) as pub:
        pub.start()
        wait_for(lambda: cursor(data).acked_lsn == 1000, "everything published")
        wait_for(lambda: get(port, "/healthz")[0] == 200, "healthy")
        _, text = get(port, "/metrics")
        assert metric(text, "acked_lsn") == 1000
        assert metric(text, "durable_lsn") == 1000
        assert metric(text, "lag_records") == 0
        assert metric(text, "acks") == 1000
        assert metric(text, "published") == 1000
        assert metric(text, "in_flight") == 0
        nats1.stop()
        _, body = wait_for(
            lambda: (r := get(port, "/healthz"))[0] == 503 and r, "unhealthy without NATS"
        )
        assert "not connected to NATS" in body
        assert pub.stop() == 0
