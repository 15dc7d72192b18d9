"""Soak: the recorder at a sustained high rate for minutes; its resident memory must plateau.

VmRSS of the recorder is sampled from /proc once a second. The journal is memory-mapped, so
RSS includes the touched pages of mapped segments (RssFile) besides the heap (RssAnon); both
are reported. The run ends with the same exact check as the chaos run.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from .chaos import Verdict, memory_kib, verify
from .harness import JournalWatch, Recorder, Simulator, stream_keys

__all__ = ["SoakConfig", "SoakResult", "run_soak"]

SAMPLE_S = 1.0  # one RSS sample a second
GROWTH = 1.2  # the last third's peak may exceed the first third's by this factor ...
SLACK_KIB = 16 * 1024  # ... plus this much (allocator and page-cache noise)


@dataclass(frozen=True)
class SoakConfig:
    """How long, how fast, how many streams, where."""

    workdir: Path
    minutes: float
    rate: float  # messages/s per stream
    channels: dict[str, list[str]]
    seed: int = 0  # recorded in the verdict only: the soak has no random schedule


@dataclass
class SoakResult:
    """RSS samples (KiB) and the exact check's verdict."""

    verdict: Verdict
    rss: list[tuple[int, int, int]] = field(default_factory=list)  # (VmRSS, RssAnon, RssFile)
    frames: int = 0

    def thirds(self) -> tuple[int, int]:
        """Peak VmRSS in the first and in the last third of the samples."""
        n = max(1, len(self.rss) // 3)
        return max(r[0] for r in self.rss[:n]), max(r[0] for r in self.rss[-n:])

    @property
    def plateaued(self) -> bool:
        """Whether memory stopped growing: last-third peak <= first-third peak * GROWTH + slack."""
        first, last = self.thirds()
        return last <= first * GROWTH + SLACK_KIB

    def line(self) -> str:
        """The one-line soak verdict."""
        first, last = self.thirds()
        anon = max(r[1] for r in self.rss)
        mapped = max(r[2] for r in self.rss)
        ok = self.verdict.ok and self.plateaued
        return (
            f"soak {'PASS' if ok else 'FAIL'} samples={len(self.rss)} frames={self.frames} "
            f"rss_first_third_max_mib={first / 1024:.1f} rss_last_third_max_mib={last / 1024:.1f} "
            f"rss_anon_max_mib={anon / 1024:.1f} rss_file_max_mib={mapped / 1024:.1f} | "
            f"{self.verdict.line()}"
        )


def run_soak(config: SoakConfig) -> SoakResult:
    """Record ``config.channels`` at ``config.rate`` for ``config.minutes``, sampling RSS."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    data_dir = config.workdir / "data"
    keys = stream_keys(config.channels)
    watch = JournalWatch(data_dir / "journal")
    streams = [
        arg for c, s in config.channels.items() for arg in ("--stream", f"{c}:{','.join(s)}")
    ]
    result = SoakResult(Verdict(config.seed))
    began = time.monotonic()
    with (
        Simulator(config.workdir, *streams, rate=config.rate) as sim,
        Recorder(config.workdir, data_dir, sim.url, config.channels) as rec,
    ):
        proc = rec.start()
        result.verdict.runs = 1
        rec.until(lambda: set(watch.poll().max_seq) == keys, "every stream recording")
        end = time.monotonic() + 60.0 * config.minutes
        while time.monotonic() < end:
            # The sampling period itself (a measurement cadence, not a wait for a result).
            time.sleep(SAMPLE_S)
            assert rec.running(), rec.log()[-3000:]
            result.rss.append(memory_kib(proc.pid))
        result.frames = watch.poll().inbound
        assert rec.stop(signal.SIGTERM) == 0, rec.log()[-3000:]
        result.verdict.terms = 1
    result.verdict.max_rss_kib = max(r[0] for r in result.rss)
    result.verdict.elapsed_s = time.monotonic() - began
    verify(data_dir, keys, {k: [] for k in keys}, result.verdict)
    return result
