"""Real processes for the end-to-end tests: a simulator and recorders as subprocesses on loopback.

Nothing here sleeps to wait: every wait polls a condition against a deadline. The recorder is
observed from outside only, the way an operator would: ``fastfeed status/gaps/export``, its log
files, and the journal read lock-free with :func:`fastfeed.journal.read_journal`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson

from fastfeed import defaults
from fastfeed.journal import RecordKind, read_journal
from fastfeed.sim.content import StreamGenerator

__all__ = [
    "DEADLINE_S",
    "REPO",
    "SECRET",
    "STOP_DEADLINE_S",
    "JournalWatch",
    "Recorder",
    "Simulator",
    "Stream",
    "assert_exact",
    "cli",
    "export",
    "gaps",
    "grep_secret",
    "status",
    "stream_keys",
    "wait_for",
]

T = TypeVar("T")
Stream = tuple[str, str]  # (channel, symbol)

REPO = Path(__file__).resolve().parents[2]
FASTFEED = (sys.executable, "-m", "fastfeed")
SECRET = "sk-e2e-Zq7vW3xK9pLm2Rt8"  # distinctive enough that any hit is a real leak
DEADLINE_S = 60.0  # any single wait: far above what a healthy run needs on a busy machine
POLL_S = 0.02  # condition re-check interval
# Graceful exit promises SHUTDOWN_TIMEOUT_S; process start and interpreter exit come on top.
STOP_DEADLINE_S = defaults.SHUTDOWN_TIMEOUT_S + 20.0
CLI_TIMEOUT_S = 120.0

# A sequenced push as the simulator frames it: {"cmd":CH,"seq":N,"data":{"symbol":SYM,...
_PUSH = re.compile(rb'^\{"cmd":"(\w+)","seq":(\d+),"data":\{"symbol":"([^"]+)"')


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = DEADLINE_S) -> T:
    """Poll ``condition`` until it returns something truthy and return that; fail at ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fastfeed ARGS`` to completion, output captured as text."""
    return subprocess.run(
        [*FASTFEED, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        check=False,
    )


def status(data_dir: Path) -> dict[str, Any]:
    """``fastfeed status --format json``; an empty status before the data dir exists."""
    if not (data_dir / "fastfeed.db").exists():
        return {"streams": [], "gaps_open": 0, "counters": {}}
    proc = cli("status", "--data-dir", str(data_dir), "--format", "json")
    assert proc.returncode == 0, f"status failed: {proc.stderr}"
    doc: dict[str, Any] = orjson.loads(proc.stdout)
    return doc


def gaps(data_dir: Path) -> list[dict[str, Any]]:
    """``fastfeed gaps --format json``: the whole gap ledger."""
    proc = cli("gaps", "--data-dir", str(data_dir), "--format", "json")
    assert proc.returncode == 0, f"gaps failed: {proc.stderr}"
    rows: list[dict[str, Any]] = orjson.loads(proc.stdout)
    return rows


def export(data_dir: Path) -> dict[Stream, list[dict[str, Any]]]:
    """``fastfeed export``, rows grouped by (channel, symbol) in the order exported."""
    proc = cli("export", "--data-dir", str(data_dir))
    assert proc.returncode == 0, f"export failed: {proc.stderr}"
    streams: dict[Stream, list[dict[str, Any]]] = {}
    for line in proc.stdout.splitlines():
        row = orjson.loads(line)
        streams.setdefault((row["channel"], row["symbol"]), []).append(row)
    return streams


def stream_keys(channels: dict[str, list[str]]) -> set[Stream]:
    """``{"depth": ["A", "B"]}`` -> ``{("depth", "A"), ("depth", "B")}``."""
    return {(channel, symbol) for channel, symbols in channels.items() for symbol in symbols}


def assert_exact(
    data_dir: Path, expected: set[Stream], *, seed: int = defaults.SIM_SEED
) -> dict[Stream, int]:
    """Each stream exported is exactly seq 1..last with the simulator's bytes; no gap is open.

    Returns every stream's last seq.
    """
    streams = export(data_dir)
    assert set(streams) == expected, f"exported streams {sorted(streams)} != {sorted(expected)}"
    lasts: dict[Stream, int] = {}
    for (channel, symbol), rows in sorted(streams.items()):
        seqs = [row["seq"] for row in rows]
        for want, row in enumerate(rows, start=1):
            # The first wrong seq names the problem (missing or duplicated) without a huge diff.
            assert row["seq"] == want, (
                f"{channel}:{symbol}: position {want} holds seq {row['seq']}; "
                f"around it: {seqs[max(0, want - 4) : want + 3]} of {len(seqs)} rows"
            )
        gen = StreamGenerator(seed, channel, symbol)
        for row in rows:
            want_frame = gen.next()
            assert "frame" in row, f"{channel}:{symbol} seq {row['seq']} exported as binary"
            assert row["frame"].encode() == want_frame, (
                f"{channel}:{symbol} seq {row['seq']}: {row['frame'][:120]!r} "
                f"!= simulator's {want_frame[:120]!r}"
            )
        lasts[(channel, symbol)] = len(rows)
    still_open = [g for g in gaps(data_dir) if g["state"] == "open"]
    assert still_open == [], f"gaps still open: {still_open}"
    return lasts


class Simulator:
    """``fastfeed sim --port 0`` in a subprocess; the URL is read from its first stdout line."""

    def __init__(self, workdir: Path, *options: str, rate: float = 1500.0) -> None:
        self._err_path = workdir / "sim.err"
        self._args = [*FASTFEED, "sim", "--port", "0", "--rate", f"{rate:g}", *options]
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Simulator:
        with self._err_path.open("ab") as err:
            self._proc = proc = subprocess.Popen(
                self._args, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True
            )
        assert proc.stdout is not None
        # The simulator prints "fastfeed sim listening on ws://127.0.0.1:PORT/v1/realtime"
        # once it is bound, so this readline is the readiness wait (EOF if it died).
        line = proc.stdout.readline()
        match = re.search(r"ws://\S+", line)
        if match is None:
            self.__exit__(None, None, None)
            raise AssertionError(f"simulator printed {line!r}; stderr: {self.stderr()}")
        self.url = match.group(0)
        return self

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the simulator (SIGSTOP/SIGCONT: a network cut that keeps history)."""
        assert self._proc is not None
        self._proc.send_signal(sig)

    def stderr(self) -> str:
        """What the simulator logged so far."""
        return self._err_path.read_text(errors="replace") if self._err_path.exists() else ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        proc.terminate()
        try:
            code = proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("simulator ignored SIGTERM") from None
        finally:
            assert proc.stdout is not None
            proc.stdout.close()
        if exc_type is None:
            assert code == 0, f"simulator exited {code}: {self.stderr()[-2000:]}"


class Recorder:
    """Starts and stops ``fastfeed run`` processes over one data dir; each run's output is kept.

    ``key`` goes in ``TICKDB_API_KEY`` (None: no key in the environment); ``options`` are
    appended verbatim. With ``config``, only ``--config FILE`` says where to connect, what to
    record and where to keep it; otherwise ``url``, ``channels`` and ``data_dir`` become flags.
    """

    def __init__(
        self,
        workdir: Path,
        data_dir: Path,
        url: str,
        channels: dict[str, list[str]],
        *options: str,
        key: str | None = SECRET,
        log_format: str = "json",
        config: Path | None = None,
    ) -> None:
        self.workdir, self.data_dir = workdir, data_dir
        args = [*FASTFEED, "run", "--log-format", log_format]
        if config is not None:
            args += ["--config", str(config)]
        else:
            args += ["--endpoint", url, "--data-dir", str(data_dir)]
            for channel, symbols in channels.items():
                args += ["--channels", f"{channel}:{','.join(symbols)}"]
        self.args = [*args, *options]
        env = {k: v for k, v in os.environ.items() if k != "TICKDB_API_KEY"}
        if key is not None:
            env["TICKDB_API_KEY"] = key
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.outputs: list[Path] = []

    def start(self) -> subprocess.Popen[bytes]:
        """Start one recorder process (the previous one must have exited)."""
        assert self.proc is None or self.proc.poll() is not None, "a recorder is still running"
        self.runs += 1
        out = self.workdir / f"recorder-{self.runs}.out"
        err = self.workdir / f"recorder-{self.runs}.err"
        self.outputs += [out, err]
        with out.open("wb") as out_fh, err.open("wb") as err_fh:
            self.proc = subprocess.Popen(
                self.args, cwd=REPO, stdout=out_fh, stderr=err_fh, env=self.env
            )
        return self.proc

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the running recorder."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_DEADLINE_S) -> int:
        """Wait for the recorder to exit; fail (and kill it) if it outlives ``timeout``."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"recorder still running {timeout:g} s after the signal; log: {self.log()[-3000:]}"
            ) from None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit code."""
        self.send(sig)
        return self.wait()

    def until(self, condition: Callable[[], T | None], what: str, timeout: float = DEADLINE_S) -> T:
        """:func:`wait_for`, but fail at once (with the log) if the recorder has exited."""

        def alive_and(condition: Callable[[], T | None] = condition) -> T | None:
            if not self.running():
                assert self.proc is not None
                raise AssertionError(
                    f"recorder exited {self.proc.returncode} while waiting for {what}; "
                    f"log: {self.log()[-3000:]}"
                )
            return condition()

        return wait_for(alive_and, what, timeout)

    def signal_pending(self, sig: signal.Signals) -> bool:
        """Whether ``sig`` was sent but the kernel has not delivered it yet (/proc status).

        Two signals of one kind sent before the first is delivered merge into one; a test of
        "the second signal" must see the first delivered before sending the second.
        """
        assert self.proc is not None
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except FileNotFoundError:
            return False
        bit = 1 << (sig - 1)
        masks = re.findall(r"^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$", text, re.MULTILINE)
        return any(int(mask, 16) & bit for mask in masks)

    def kill(self) -> None:
        """SIGKILL the recorder and reap it."""
        assert self.proc is not None
        self.proc.kill()
        assert self.proc.wait(timeout=STOP_DEADLINE_S) == -signal.SIGKILL

    def running(self) -> bool:
        """Whether the last started recorder is still alive."""
        return self.proc is not None and self.proc.poll() is None

    def log(self, run: int | None = None) -> str:
        """stdout + stderr of one run (default: all runs so far)."""
        paths = self.outputs if run is None else self.outputs[2 * run - 2 : 2 * run]
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def log_messages(self) -> list[str]:
        """The ``msg`` of every JSON log line of every run."""
        found = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                found.append(str(orjson.loads(line).get("msg", "")))
        return found

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Never leave a recorder behind, whatever failed.
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()


class JournalWatch:
    """Follows a journal from outside, lock-free: records, connections and seqs seen so far."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.last_lsn = 0
        self.inbound = 0
        self.connected = 0  # CONNECTION records with event "connected"
        self.events: list[tuple[str, int]] = []  # every CONNECTION record: (event, recv_ns)
        self.max_seq: dict[Stream, int] = {}
        self.duplicates = 0  # well-formed pushes whose (stream, seq) was journaled before
        self.garbage = 0  # binary, non-JSON or wrongly shaped frames: what counts as malformed
        self._seen: set[tuple[str, str, int]] = set()

    def poll(self) -> JournalWatch:
        """Read the records appended since the last poll; returns self for chaining."""
        if not self.directory.is_dir():
            return self
        for record in read_journal(self.directory, self.last_lsn + 1):
            self.last_lsn = record.lsn
            if record.kind == RecordKind.INBOUND:
                self.inbound += 1
                self._inbound(record.payload, binary=bool(record.flags & 1))
            elif record.kind == RecordKind.CONNECTION:
                event = str(orjson.loads(record.payload).get("event"))
                self.events.append((event, record.recv_ns))
                self.connected += event == "connected"
        return self

    def journaled(self, key: Stream, seq: int) -> bool:
        """Whether a push of ``key`` with ``seq`` was journaled (as of the last poll)."""
        return (key[0], key[1], seq) in self._seen

    def _inbound(self, payload: bytes, *, binary: bool) -> None:
        try:
            doc = None if binary else orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("data", {}), dict):
            self.garbage += 1
            return
        match = _PUSH.match(payload)
        if match is None:
            return  # an ack, pong or error
        channel, seq, symbol = match.group(1).decode(), int(match.group(2)), match.group(3).decode()
        if (channel, symbol, seq) in self._seen:
            self.duplicates += 1
        self._seen.add((channel, symbol, seq))
        if seq > self.max_seq.get((channel, symbol), 0):
            self.max_seq[(channel, symbol)] = seq


def grep_secret(secret: bytes, paths: Iterable[Path], blobs: Sequence[bytes] = ()) -> list[str]:
    """Every file (read as bytes) or blob that contains ``secret``, as a readable list."""
    hits = [str(p) for p in paths if p.is_file() and secret in p.read_bytes()]
    hits += [f"blob #{i}" for i, blob in enumerate(blobs) if secret in blob]
    return hits
