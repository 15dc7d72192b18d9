"""`--metrics`: scraped from a running recorder; /healthz turns 503 when the venue goes away."""

from __future__ import annotations

import re
import signal
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .harness import CLI_TIMEOUT_S, Recorder, Simulator, cli, stream_keys

__all__: list[str] = []

CHANNELS = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]}
STALL_TIMEOUT_S = 1.0  # the watchdog /healthz compares the outage with
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def get(url: str) -> tuple[int, str]:
    """(status, body) of one GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=CLI_TIMEOUT_S) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> Samples:
    """Every sample of /metrics by (name, sorted labels)."""
    code, text = get(f"{base}/metrics")
    assert code == 200, text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def per_stream(samples: Samples, name: str) -> dict[tuple[str, str], float]:
    found = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            found[(dict(labels)["channel"], dict(labels)["symbol"])] = value
    return found


def test_scrape_during_a_run_and_health_after_the_venue_stops(
    tmp_path: Path, data_dir: Path
) -> None:
    streams = stream_keys(CHANNELS)
    sim = Simulator(tmp_path).__enter__()
    try:
        with Recorder(
            tmp_path,
            data_dir,
            sim.url,
            CHANNELS,
            "--metrics",
            "0",
            "--stall-timeout",
            f"{STALL_TIMEOUT_S:g}",
        ) as rec:
            rec.start()
            base = rec.until(lambda: _metrics_url(rec), "the metrics address in the log")
            # Healthy and recording: every stream has frames, bytes and a fresh last message.
            first = rec.until(
                lambda: (
                    (s := scrape(base))
                    and set(per_stream(s, "fastfeed_stream_frames_total")) == streams
                    and min(per_stream(s, "fastfeed_stream_frames_total").values()) >= 50
                    and s
                ),
                "50 frames on every stream",
            )
            frames = per_stream(first, "fastfeed_stream_frames_total")
            nbytes = per_stream(first, "fastfeed_stream_bytes_total")
            assert all(nbytes[k] > 50 * frames[k] for k in streams)  # a push is > 50 bytes
            assert all(
                v < 60
                for v in per_stream(first, "fastfeed_stream_last_message_age_seconds").values()
            )
            assert all(
                v == 0 for v in per_stream(first, "fastfeed_stream_gaps_opened_total").values()
            )
            one = {name: value for (name, labels), value in first.items() if not labels}
            assert one["fastfeed_connection_up"] == 1
            assert one["fastfeed_frames_received_total"] >= sum(frames.values())
            assert one["fastfeed_records_journaled_total"] > one["fastfeed_frames_received_total"]
            # Durable may still be 0: the commit thread first pre-creates the next 64 MiB segment.
            assert one["fastfeed_journal_accepted_lsn"] >= one["fastfeed_journal_durable_lsn"]
            assert one["fastfeed_snapshot_lag_records"] == (
                one["fastfeed_journal_accepted_lsn"] - one["fastfeed_snapshot_applied_lsn"]
            )
            assert one["fastfeed_malformed_frames_total"] == 0
            assert one["process_resident_memory_bytes"] > 1_000_000
            # Durability advances between scrapes, and SQLite follows.
            rec.until(
                lambda: (
                    scrape(base)[("fastfeed_journal_durable_lsn", ())]
                    > one["fastfeed_journal_accepted_lsn"]
                ),
                "the durable LSN to pass the first scrape's accepted LSN",
            )
            later = scrape(base)
            assert later[("fastfeed_journal_commit_seconds_count", ())] > 0
            assert later[("fastfeed_journal_fsync_errors_total", ())] == 0
            rec.until(
                lambda: (
                    scrape(base)[("fastfeed_snapshot_applied_lsn", ())]
                    >= one["fastfeed_journal_accepted_lsn"]
                ),
                "SQLite to apply past the first scrape",
            )
            assert get(f"{base}/healthz") == (200, "ok\n")

            # The venue goes away: down, then unhealthy once down longer than the watchdog.
            sim.__exit__(None, None, None)
            rec.until(lambda: scrape(base)[("fastfeed_connection_up", ())] == 0, "connection down")
            _, body = rec.until(
                lambda: (reply := get(f"{base}/healthz"))[0] == 503 and reply,
                "/healthz to fail",
            )
            match = re.fullmatch(r"connection down for ([\d.]+) s \(watchdog 1 s\)\n", body)
            assert match and float(match.group(1)) >= STALL_TIMEOUT_S, body  # shown to 0.1 s
            rec.until(lambda: scrape(base)[("fastfeed_reconnects_total", ())] >= 1, "a retry")
            assert rec.stop(signal.SIGTERM) == 0
    finally:
        sim.__exit__(None, None, None)


def _metrics_url(rec: Recorder) -> str | None:
    for msg in rec.log_messages():
        match = re.match(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", msg)
        if match:
            return match.group(1)
    return None


def test_bad_metrics_address_is_one_line(tmp_path: Path) -> None:
    proc = cli(
        "run", "--venue", "sim", "--channels", "depth:AAPL.US", "--data-dir",
        str(tmp_path / "d"), "--metrics", "localhost:9464",
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == (
        "fastfeed: bad metrics address 'localhost:9464': expected PORT or ADDR:PORT,"
        " e.g. 9464 or 0.0.0.0:9464\n"
    )
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_metrics_key_in_the_toml_config(tmp_path: Path) -> None:
    config = tmp_path / "fastfeed.toml"
    config.write_text(
        f'venue = "sim"\nchannels = ["depth:AAPL.US"]\ndata_dir = "{tmp_path / "d"}"\n'
        "metrics = 99999\n"  # a TOML integer: a port alone
    )
    proc = cli("run", "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr == ("fastfeed: bad metrics port 99999 in '99999': expected 0..65535\n")
