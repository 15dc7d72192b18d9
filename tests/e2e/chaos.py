"""Chaos: a seeded schedule of recorder signals, simulator faults, network cuts and venue restarts.

One data dir, one recorder command line, a sequence of *segments*. Each segment is one simulator
process (a venue lifetime) with its own fault plan, restarted with ``--start-seq`` past the
previous one's head: a venue restart that keeps its numbering but loses its replay buffer, so
whatever the recorder had not received by then can never be filled. Within a segment the
recorder is SIGKILLed, SIGTERMed or SIGINTed and restarted, and the network is cut by SIGSTOPping
the simulator (history kept, the stall watchdog fires). Every moment is drawn from one seeded
RNG and counted in journaled frames, so a seed reproduces the schedule.

At the end every stream is checked against the venue: seqs 1..last are each either recorded
exactly once with the simulator's bytes, or inside a LOST gap of the ledger, and a seq may be
lost only if it fell in a window the chaos itself made unrecoverable (between what the recorder
had journaled when a simulator died and the next simulator's first seq). No gap may stay open.

This module is the engine; ``scripts/chaos.py`` is its command line and
``tests/e2e/test_chaos.py`` runs a short schedule.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from fastfeed import defaults
from fastfeed.sim.content import StreamGenerator

from .harness import (
    CLI_TIMEOUT_S,
    FASTFEED,
    REPO,
    JournalWatch,
    Recorder,
    Simulator,
    Stream,
    gaps,
    status,
    stream_keys,
    wait_for,
)

__all__ = ["ChaosConfig", "Verdict", "memory_kib", "run_chaos", "verify"]

SIM_SEED = defaults.SIM_SEED
GARBAGE = "text,binary,truncated,shape"  # oversized (16 MiB frames) is tests/e2e/test_faults.py's
ACTIONS = ("kill", "term", "int", "cut", "kill_in_cut")
FAULTS = ("abort", "close", "stall", "frames", "refuse", "reject", "clean")
Interval = tuple[int, int]


@dataclass(frozen=True)
class ChaosConfig:
    """What to run: how long, how fast, what to record, where."""

    workdir: Path
    seed: int
    segments: int  # simulator lifetimes (restarts = segments - 1) ...
    actions_per_segment: int  # recorder signals and network cuts per segment
    rate: float  # messages/s per stream
    channels: dict[str, list[str]]
    stall_timeout_s: float = 1.0  # the recorder's watchdog: cuts and stalls are longer than it
    frames_per_action: tuple[int, int] = (200, 3000)  # journaled frames between two actions
    max_outage_s: float = 3.0  # longest recorder downtime or network cut
    max_restart_jump: int = 500  # seqs a restarted venue may skip (0 half of the time)
    minutes: float | None = None  # ... or as many as fit in this long, the last one clean


@dataclass
class Verdict:
    """Counts the run ends with; ``ok`` when nothing was lost, doubled, altered or left open."""

    seed: int
    runs: int = 0
    kills: int = 0
    terms: int = 0
    ints: int = 0
    cuts: int = 0
    sim_restarts: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    records: int = 0
    missing: int = 0  # seqs neither recorded nor in the ledger as LOST
    duplicated: int = 0
    mismatched: int = 0  # recorded with bytes other than the venue's
    lost: int = 0  # seqs LOST in the ledger, all inside windows the chaos made unrecoverable
    wrong_gaps: int = 0  # seqs LOST in the ledger that were recorded or could have been
    open_gaps: int = 0
    max_rss_kib: int = 0  # the largest recorder VmRSS sampled ...
    max_anon_kib: int = 0  # ... and RssAnon (VmRSS also counts mapped journal pages)
    problems: list[str] = field(default_factory=list)  # what each bad count is, per stream
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """No loss of any kind."""
        bad = self.missing + self.duplicated + self.mismatched + self.wrong_gaps + self.open_gaps
        return bad == 0 and self.records > 0

    def line(self) -> str:
        """The one-line verdict."""
        faults = ",".join(f"{k}:{v}" for k, v in sorted(self.faults.items()))
        return (
            f"chaos {'PASS' if self.ok else 'FAIL'} seed={self.seed} runs={self.runs} "
            f"kills={self.kills} terms={self.terms} ints={self.ints} cuts={self.cuts} "
            f"sim_restarts={self.sim_restarts} faults={faults} records={self.records} "
            f"missing={self.missing} duplicated={self.duplicated} mismatched={self.mismatched} "
            f"lost_unrecoverable={self.lost} wrong_gaps={self.wrong_gaps} "
            f"open_gaps={self.open_gaps} max_rss_mib={self.max_rss_kib / 1024:.1f} "
            f"max_anon_mib={self.max_anon_kib / 1024:.1f} "
            f"elapsed_s={self.elapsed_s:.0f}"
        )


@dataclass(frozen=True)
class Segment:
    """One simulator lifetime: its fault, how far its numbering jumps, the actions within it."""

    fault: str
    jump: int
    actions: tuple[tuple[str, int, float], ...]  # (action, frames before it, outage seconds)
    tail: int  # frames journaled after the last action, before the venue dies


def plan(config: ChaosConfig) -> Iterator[Segment]:
    """The schedule, from the seed alone, as long as the caller takes from it.

    Every fault and action kind is dealt once before any repeats, so even a short schedule
    covers them all.
    """
    rng = random.Random(config.seed)
    faults = _deck(rng, FAULTS)
    actions = _deck(rng, ACTIONS)
    lo, hi = config.frames_per_action
    for i in itertools.count():
        jump = 0 if i == 0 or rng.random() < 0.5 else rng.randint(1, config.max_restart_jump)
        acts = tuple(
            (next(actions), rng.randint(lo, hi), rng.uniform(0.0, config.max_outage_s))
            for _ in range(config.actions_per_segment)
        )
        yield Segment(next(faults), jump, acts, rng.randint(lo, hi))


def _deck(rng: random.Random, kinds: tuple[str, ...]) -> Iterator[str]:
    """Shuffled rounds of ``kinds``: each appears once per round."""
    while True:
        round_ = list(kinds)
        rng.shuffle(round_)
        yield from round_


def _sim_options(fault: str, rng: random.Random, config: ChaosConfig) -> list[str]:
    """Simulator flags for one segment's fault. Frame faults hit the first connection only, so
    the segment also has clean connections to catch up on."""
    first = ["--fault-seed", str(rng.randrange(1 << 30)), "--fault-connections", "1"]
    after = str(rng.randint(300, 3000))
    if fault == "abort":
        return [*first, "--fault-abort-after", after]
    if fault == "close":
        return [*first, "--fault-close-after", after]
    if fault == "stall":
        stall = f"{config.stall_timeout_s * rng.uniform(1.5, 3.0):.2f}"
        return [*first, "--fault-stall-after", after, "--fault-stall-seconds", stall]
    if fault == "frames":
        rates = [f"{rng.uniform(0.005, 0.05):.3f}" for _ in range(4)]
        return [
            *first,
            *("--fault-skip-rate", rates[0], "--fault-duplicate-rate", rates[1]),
            *("--fault-reorder-rate", rates[2], "--fault-garbage-rate", rates[3]),
            *("--fault-garbage-kinds", GARBAGE, "--fault-abort-after", after),
        ]
    if fault == "refuse":
        return ["--fault-refuse-connections", str(rng.randint(1, 2))]
    if fault == "reject":
        symbols = sorted({s for syms in config.channels.values() for s in syms})
        return ["--fault-reject-symbols", rng.choice(symbols)]
    return []


class _Chaos:
    """One chaos run's state: the processes, the journal watch, the unrecoverable windows."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed ^ 0x5EED)
        self.data_dir = config.workdir / "data"
        self.keys = stream_keys(config.channels)
        self.watch = JournalWatch(self.data_dir / "journal")
        self.verdict = Verdict(config.seed)
        self.start_seq = 1
        self.port = 0
        # Per stream: seqs below the contiguous journaled prefix (lost windows count as settled)
        # and the windows a venue restart made unrecoverable.
        self.settled: dict[Stream, int] = dict.fromkeys(self.keys, 0)
        self.windows: dict[Stream, list[Interval]] = {k: [] for k in self.keys}
        self.connected_at_start = 0
        self.died_at: dict[Stream, int] = {}  # settled seq per stream when the last venue died

    # -- the schedule --------------------------------------------------------------------------
    def run(self) -> Verdict:
        began = time.monotonic()
        deadline = began + 60.0 * (self.config.minutes or math.inf)
        rec: Recorder | None = None
        try:
            for i, drawn in enumerate(plan(self.config)):
                # The last venue is clean, so a final run can catch every stream up.
                last = i == self.config.segments - 1 or time.monotonic() >= deadline
                segment = dataclasses.replace(drawn, fault="clean") if last else drawn
                options = _sim_options(segment.fault, self.rng, self.config)
                self.verdict.faults[segment.fault] += 1
                sim_started = time.monotonic()
                with self._simulator(segment, options) as sim:
                    self.port = int(sim.url.rsplit(":", 1)[1].split("/", 1)[0])
                    if rec is None:
                        rec = Recorder(
                            self.config.workdir,
                            self.data_dir,
                            sim.url,
                            self.config.channels,
                            "--stall-timeout",
                            f"{self.config.stall_timeout_s:g}",
                        )
                        self._start(rec)
                    elif not rec.running():
                        self._start(rec)
                    for action in segment.actions:
                        self._act(rec, sim, *action)
                    if last:
                        self._finish(rec)
                        break
                    # The recorder gets back on its feet before the venue dies, so what the
                    # restart destroys is mostly frames in flight, not a whole outage.
                    self._frames(rec, segment.tail)
                # The venue is gone: what the recorder journaled from it is all it will get.
                self._venue_died(rec, sim_started)
        finally:
            if rec is not None and rec.running():
                assert rec.proc is not None
                rec.proc.kill()
                rec.proc.wait()
        self.verdict.elapsed_s = time.monotonic() - began
        verify(self.data_dir, self.keys, self.windows, self.verdict)
        return self.verdict

    def _simulator(self, segment: Segment, options: list[str]) -> Simulator:
        self.start_seq += segment.jump
        for key, base in self.died_at.items():
            if base + 1 < self.start_seq:
                self.windows[key].append((base + 1, self.start_seq - 1))
                self.settled[key] = self.start_seq - 1
        port = ["--port", str(self.port)] if self.port else []
        streams = [f"{c}:{','.join(s)}" for c, s in self.config.channels.items()]
        args = [*options, *port, "--start-seq", str(self.start_seq)]
        for stream in streams:
            args += ["--stream", stream]
        return Simulator(self.config.workdir, *args, rate=self.config.rate)

    def _venue_died(self, rec: Recorder, sim_started: float) -> None:
        self.verdict.sim_restarts += 1
        # The next venue numbers on past anything this one can have published.
        alive_s = time.monotonic() - sim_started
        self.start_seq += math.ceil(alive_s * self.config.rate) + 1
        # Wait until the recorder holds no connection to the dead venue, so nothing more of it
        # can reach the journal.
        wait_for(
            lambda: (
                not rec.running()
                or self.watch.poll().connected == self.connected_at_start
                or self.watch.events[-1][0] != "connected"
            ),
            "the recorder to notice the simulator is gone",
        )
        # What each stream had settled when the venue died; the window closes at the next
        # venue's first seq, which a jump may still raise.
        self.died_at = {key: self._settle(key) for key in self.keys}

    def _settle(self, key: Stream) -> int:
        base = self.settled[key]
        while self.watch.journaled(key, base + 1):
            base += 1
        self.settled[key] = base
        return base

    def _start(self, rec: Recorder) -> None:
        self.connected_at_start = self.watch.poll().connected
        rec.start()
        self.verdict.runs += 1

    def _frames(self, rec: Recorder, count: int) -> None:
        """Let the recorder journal ``count`` more frames (the clock of the schedule)."""
        target = self.watch.poll().inbound + count
        rec.until(lambda: self.watch.poll().inbound >= target, f"{count} more journaled frames")
        self._sample_rss(rec)

    def _sample_rss(self, rec: Recorder) -> None:
        assert rec.proc is not None
        rss, anon, _ = memory_kib(rec.proc.pid)
        self.verdict.max_rss_kib = max(self.verdict.max_rss_kib, rss)
        self.verdict.max_anon_kib = max(self.verdict.max_anon_kib, anon)

    def _act(self, rec: Recorder, sim: Simulator, action: str, frames: int, outage: float) -> None:
        self._frames(rec, frames)
        if action in ("term", "int"):
            self._stop(rec, signal.SIGTERM if action == "term" else signal.SIGINT)
            self._outage(outage)
            self._start(rec)
        elif action == "kill":
            rec.kill()
            self.verdict.kills += 1
            self._outage(outage)
            self._start(rec)
        else:
            # A network cut: the venue freezes with its history intact; the recorder's watchdog
            # drops the silent connection and its reconnects hang until the venue is back.
            sim.send(signal.SIGSTOP)
            self.verdict.cuts += 1
            try:
                if action == "kill_in_cut":
                    rec.kill()
                    self.verdict.kills += 1
                    self._start(rec)
                self._outage(self.config.stall_timeout_s + outage)
            finally:
                sim.send(signal.SIGCONT)

    @staticmethod
    def _outage(seconds: float) -> None:
        # The outage itself, not a wait for a result: the venue publishes on while the recorder
        # is down or cut off, and the recorder must fetch all of it afterwards.
        time.sleep(seconds)

    def _finish(self, rec: Recorder) -> None:
        """Restart the recorder on the clean last venue, let it catch every stream up, stop."""
        if rec.running():
            # Up first: a signal before the interpreter has even imported fastfeed kills it.
            rec.until(lambda: self.watch.poll().connected > self.connected_at_start, "connected")
            self._stop(rec, signal.SIGTERM)
        self._start(rec)
        first = self.start_seq
        rec.until(
            lambda: all(self.watch.poll().max_seq.get(k, 0) >= first + 200 for k in self.keys),
            "every stream recorded on the last venue",
        )
        rec.until(lambda: status(self.data_dir)["gaps_open"] == 0, "every gap resolved")
        self._sample_rss(rec)
        self._stop(rec, signal.SIGTERM)

    def _stop(self, rec: Recorder, sig: signal.Signals) -> None:
        """A graceful stop: exit code 0 is part of the contract."""
        code = rec.stop(sig)
        assert code == 0, f"{sig.name} exited {code}: {rec.log(rec.runs)[-3000:]!r}"
        self.verdict.terms += sig is signal.SIGTERM
        self.verdict.ints += sig is signal.SIGINT


def memory_kib(pid: int) -> tuple[int, int, int]:
    """(VmRSS, RssAnon, RssFile) of a process in KiB from /proc; zeros once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0, 0
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def kib(name: str) -> int:
        return int(fields.get(name, "0 kB").split()[0])

    return kib("VmRSS"), kib("RssAnon"), kib("RssFile")


# -- the check -------------------------------------------------------------------------------
def verify(
    data_dir: Path, keys: set[Stream], windows: dict[Stream, list[Interval]], verdict: Verdict
) -> None:
    """Stream ``fastfeed export`` against the simulator's bytes and the ledger; fill the counts.

    Streams rows rather than loading them: a long run holds millions.
    """
    recorded: dict[Stream, list[Interval]] = {k: [] for k in keys}
    generators: dict[Stream, StreamGenerator] = {}
    with subprocess.Popen(
        [*FASTFEED, "export", "--data-dir", str(data_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            row = orjson.loads(line)
            key = (row["channel"], row["symbol"])
            seq = row["seq"]
            verdict.records += 1
            runs = recorded.setdefault(key, [])
            if runs and seq <= runs[-1][1]:
                verdict.duplicated += 1  # export is in seq order: a repeat is never ahead
                continue
            gen = generators.get(key)
            if gen is None:
                gen = generators[key] = StreamGenerator(SIM_SEED, *key)
            while gen.seq < seq - 1:
                gen.next()
            frame = row.get("frame")
            if frame is None or frame.encode() != gen.next():
                verdict.mismatched += 1
            if runs and runs[-1][1] == seq - 1:
                runs[-1] = (runs[-1][0], seq)
            else:
                runs.append((seq, seq))
        assert proc.wait(timeout=CLI_TIMEOUT_S) == 0, "export failed"
    lost: dict[Stream, list[Interval]] = {k: [] for k in keys}
    for gap in gaps(data_dir):
        key = (gap["channel"], gap["symbol"])
        if gap["state"] == "open":
            verdict.open_gaps += 1
        elif gap["state"] == "lost":
            lost.setdefault(key, []).append((gap["from_seq"], gap["to_seq"]))
    for key in sorted(set(recorded) | set(lost) | keys):
        rec, los = _merge(recorded.get(key, [])), _merge(lost.get(key, []))
        last = max([hi for _, hi in rec + los], default=0)
        if key not in keys or not rec:
            verdict.missing += max(last, 1)  # a stream recorded out of nowhere, or not at all
            continue
        verdict.lost += _size(los)
        allowed = _merge(windows.get(key, []))
        overlap = _intersect(rec, los)
        outside = _subtract(los, allowed)
        # The recorder's first subscribe is live (no resume): what the venue published before
        # it is not the recorder's to miss, so a stream starts at its first recorded seq.
        missing = _subtract([(rec[0][0], last)], _merge(rec + los))
        verdict.wrong_gaps += _size(overlap) + _size(outside)
        verdict.missing += _size(missing)
        name = ":".join(key)
        for what, found in (("lost yet recorded", overlap), ("lost, was available", outside)):
            if found:
                verdict.problems.append(f"{name}: {what}: {found[:5]}")
        if missing:
            verdict.problems.append(
                f"{name}: missing {missing[:5]}; lost {los[:8]}; unrecoverable windows "
                f"{allowed[:8]}"
            )


def _merge(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out = []
    for alo, ahi in a:
        for blo, bhi in b:
            lo, hi = max(alo, blo), min(ahi, bhi)
            if lo <= hi:
                out.append((lo, hi))
    return _merge(out)


def _subtract(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """The seqs of ``a`` not in ``b`` (both merged), as intervals."""
    out = []
    for lo, hi in a:
        for blo, bhi in b:
            if bhi < lo or blo > hi:
                continue
            if blo > lo:
                out.append((lo, blo - 1))
            lo = bhi + 1
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return out


def _size(intervals: list[Interval]) -> int:
    return sum(hi - lo + 1 for lo, hi in intervals)


def run_chaos(config: ChaosConfig) -> Verdict:
    """Run the schedule ``config`` describes and check the result; see the module docstring."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    return _Chaos(config).run()
