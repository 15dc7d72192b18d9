"""A venue that misbehaves at the protocol level, against the real recorder process.

Each test runs a scripted TickDB look-alike on loopback: plain blocking sockets speaking just
enough RFC 6455 (the handshake of section 4.2.2, unmasked server frames and masked client
frames of section 5.2) to break the rules on purpose. The recorder is judged from outside:
its journal, ``status``/``gaps`` JSON, its log, and whether it is still alive and recording.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import signal
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from fastfeed import defaults
from fastfeed.journal import RecordKind, read_journal

from .harness import JournalWatch, Recorder, cli, export, gaps, status

__all__: list[str] = []

CHANNELS = {"trade": ["BTC.CC"]}
STREAM = ("trade", "BTC.CC")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
RECV_TIMEOUT_S = 30.0  # a scripted venue never waits longer than this for the recorder


def push(seq: int) -> bytes:
    """A sequenced trade push of BTC.CC, as the simulator frames them."""
    data = {"symbol": "BTC.CC", "price": "1", "quantity": "1", "side": "buy", "timestamp": seq}
    return orjson.dumps({"cmd": "trade", "seq": seq, "data": data})


def ack(first_seq: int, head_seq: int) -> bytes:
    streams = {"BTC.CC": {"first_seq": first_seq, "head_seq": head_seq}}
    data = {"channel": "trade", "symbols": ["BTC.CC"], "streams": streams}
    return orjson.dumps({"cmd": "subscribe", "code": 0, "message": "success", "data": data})


class Peer:
    """One accepted connection: the server side of RFC 6455 over a blocking socket."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index  # 0 for the first connection the venue accepted
        self.pongs: list[bytes] = []  # payloads of the WebSocket pongs the client sent
        self._buf = b""
        self._lock = threading.Lock()
        sock.settimeout(RECV_TIMEOUT_S)

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("client closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_request(self) -> bytes:
        """The client's HTTP upgrade request, without answering it."""
        while b"\r\n\r\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("client closed during the handshake")
            self._buf += chunk
        request, _, self._buf = self._buf.partition(b"\r\n\r\n")
        return request

    def handshake(self) -> None:
        """Read the upgrade request and accept it (RFC 6455 section 4.2.2)."""
        request = self.read_request()
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        self.sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )

    @staticmethod
    def frame_header(opcode: int, length: int) -> bytes:
        """FIN + opcode, then the payload length (7 bits, 16 or 64 bits); never masked."""
        if length < 126:
            return struct.pack("!BB", 0x80 | opcode, length)
        if length < 1 << 16:
            return struct.pack("!BBH", 0x80 | opcode, 126, length)
        return struct.pack("!BBQ", 0x80 | opcode, 127, length)

    def send(self, *frames: bytes, opcode: int = OP_TEXT) -> None:
        """Send each payload as one frame, all in one write."""
        data = b"".join(self.frame_header(opcode, len(f)) + f for f in frames)
        with self._lock:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def receive(self) -> tuple[int, bytes]:
        """The next client frame (opcode, unmasked payload); pongs are also kept in ``pongs``."""
        b0, b1 = self._read(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        mask = self._read(4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(length)))
        opcode = b0 & 0x0F
        if opcode == OP_PONG:
            self.pongs.append(payload)
        return opcode, payload

    def command(self) -> dict[str, Any]:
        """The next JSON command, answering app-level pings on the way."""
        while True:
            opcode, payload = self.receive()
            if opcode == OP_CLOSE:
                raise ConnectionError("client sent close")
            if opcode != OP_TEXT:
                continue
            doc: dict[str, Any] = orjson.loads(payload)
            if doc.get("cmd") == "ping":
                self.send(b'{"cmd":"pong"}')
                continue
            return doc

    def subscribe(self) -> int | None:
        """Wait for the subscribe; return the seq it asked to resume at (None: live)."""
        doc = self.command()
        assert doc["cmd"] == "subscribe", doc
        resume: int | None = doc["data"].get("resume", {}).get("BTC.CC")
        return resume

    def serve_commands(self, on_subscribe: Callable[[int | None], None]) -> None:
        """Answer commands until the client goes away (the end of every script)."""
        try:
            while True:
                doc = self.command()
                if doc.get("cmd") == "subscribe":
                    on_subscribe(doc["data"].get("resume", {}).get("BTC.CC"))
        except (ConnectionError, OSError):
            return


Script = Callable[[Peer], None]


class ScriptedVenue:
    """A loopback TCP server running ``script`` on each accepted connection, in a thread."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self._listener.getsockname()[1]}/v1/realtime"
        self.peers: list[Peer] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> ScriptedVenue:
        thread = threading.Thread(target=self._accept, name="venue-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # closed
            peer = Peer(sock, len(self.peers))
            self.peers.append(peer)
            thread = threading.Thread(target=self._run, args=(peer,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, peer: Peer) -> None:
        try:
            self._script(peer)
        except (ConnectionError, OSError):
            pass  # the recorder went away: the script's business ends with it
        except BaseException as exc:  # an assertion in a script fails the test at exit
            self.errors.append(exc)
        finally:
            peer.sock.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        self._listener.close()
        for peer in self.peers:
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=RECV_TIMEOUT_S)
        if exc_type is None:
            assert not self.errors, self.errors


def connection_events(watch: JournalWatch) -> list[str]:
    return [event for event, _ in watch.poll().events]


def disconnect_reasons(data_dir: Path) -> list[str]:
    """The ``reason`` of every journaled disconnect, in order."""
    reasons = []
    for record in read_journal(data_dir / "journal"):
        if record.kind == RecordKind.CONNECTION:
            doc = orjson.loads(record.payload)
            if doc.get("event") == "disconnected":
                reasons.append(str(doc.get("reason")))
    return reasons


def stream_status(data_dir: Path) -> dict[str, Any]:
    """The one stream's row of ``status`` (an empty dict before the first snapshot)."""
    streams = status(data_dir)["streams"]
    assert [(s["channel"], s["symbol"]) for s in streams] in ([], [STREAM]), streams
    return dict(streams[0]) if streams else {}


# -- (a) a frame over the size limit -------------------------------------------------------------
def test_oversized_frame_drops_the_connection_and_recording_resumes(
    tmp_path: Path, data_dir: Path
) -> None:
    """A frame header announcing MAX_FRAME_BYTES + 1 ends that connection, not the recorder."""

    def script(peer: Peer) -> None:
        peer.handshake()
        resume = peer.subscribe()
        if peer.index == 0:
            assert resume is None
            peer.send(ack(1, 0), *(push(s) for s in range(1, 101)))
            # Only the header: picows refuses the frame from its announced length.
            peer.send_raw(Peer.frame_header(OP_TEXT, defaults.MAX_FRAME_BYTES + 1) + b"x" * 64)
            peer.serve_commands(lambda _: None)
        else:
            assert resume == 101, resume
            peer.send(ack(101, 100), *(push(s) for s in range(101, 201)))
            peer.serve_commands(lambda _: None)

    watch = JournalWatch(data_dir / "journal")
    with ScriptedVenue(script) as venue, Recorder(tmp_path, data_dir, venue.url, CHANNELS) as rec:
        rec.start()
        rec.until(lambda: watch.poll().max_seq.get(STREAM, 0) >= 200, "seq 200 after reconnect")
        rec.until(lambda: _gap_records(data_dir), "the oversized frame's marker")
        assert watch.connected == 2 and watch.garbage == 0
        assert rec.stop(signal.SIGTERM) == 0
    first = disconnect_reasons(data_dir)[0]
    assert first.startswith("protocol error:"), first
    assert any(
        m.startswith("disconnected from") and "protocol error" in m for m in rec.log_messages()
    )
    row = stream_status(data_dir)
    assert (row["records"], row["duplicates"], row["last_seq"]) == (200, 0, 200)
    assert status(data_dir)["counters"]["reconnects"] == 1
    # Not resent (the resume at 101 passed it): counted, with its size, and nothing lost.
    assert status(data_dir)["counters"]["oversized"] == 1
    assert _gap_records(data_dir) == [
        b'{"event":"oversized","size":%d}' % (defaults.MAX_FRAME_BYTES + 1)
    ]
    assert "a frame over the 16777216-byte limit (16777217 bytes) was not resent: counted" in (
        rec.log_messages()
    )


def _gap_records(data_dir: Path) -> list[bytes]:
    return [r.payload for r in read_journal(data_dir / "journal") if r.kind == RecordKind.GAP]


# -- (b) a flood of pings ------------------------------------------------------------------------
PINGS = 5000


def test_ping_flood_is_answered_and_recording_goes_on(tmp_path: Path, data_dir: Path) -> None:
    """Thousands of WebSocket pings and app-level pongs between pushes: every ping answered."""
    done = threading.Event()

    def script(peer: Peer) -> None:
        peer.handshake()
        peer.subscribe()
        peer.send(ack(1, 0))
        for n in range(PINGS):
            peer.send(f"{n}".encode(), opcode=OP_PING)
            if n % 10 == 0:
                peer.send(push(n // 10 + 1), b'{"cmd":"pong"}')
        peer.send(push(PINGS // 10 + 1))
        while len(peer.pongs) < PINGS:
            peer.receive()
        assert peer.pongs == [f"{n}".encode() for n in range(PINGS)]
        done.set()
        peer.serve_commands(lambda _: None)

    watch = JournalWatch(data_dir / "journal")
    with ScriptedVenue(script) as venue, Recorder(tmp_path, data_dir, venue.url, CHANNELS) as rec:
        rec.start()
        rec.until(lambda: done.is_set(), f"pongs for all {PINGS} pings")
        last = PINGS // 10 + 1
        rec.until(lambda: watch.poll().max_seq.get(STREAM, 0) >= last, "every push journaled")
        assert rec.stop(signal.SIGTERM) == 0
    assert watch.poll().connected == 1 and watch.garbage == 0
    state = status(data_dir)
    assert state["counters"]["malformed"] == 0  # app-level pongs are pongs, not bad frames
    assert state["streams"][0]["records"] == last


# -- (c) a handshake never answered --------------------------------------------------------------
def test_unanswered_handshake_times_out_and_reconnects_with_backoff(
    tmp_path: Path, data_dir: Path
) -> None:
    """Three connections hang in the handshake; each times out, the fourth records."""
    hanging = 3

    def script(peer: Peer) -> None:
        if peer.index < hanging:
            peer.read_request()
            peer.receive()  # never answer: wait for the client to give up (EOF)
            return
        peer.handshake()
        peer.subscribe()
        peer.send(ack(1, 0), *(push(s) for s in range(1, 51)))
        peer.serve_commands(lambda _: None)

    watch = JournalWatch(data_dir / "journal")
    with ScriptedVenue(script) as venue:
        options = ("--stall-timeout", "0.5")  # the handshake timeout too
        with Recorder(tmp_path, data_dir, venue.url, CHANNELS, *options) as rec:
            rec.start()
            rec.until(lambda: watch.poll().max_seq.get(STREAM, 0) >= 50, "recording at last")
            assert len(venue.peers) == hanging + 1
            assert rec.stop(signal.SIGTERM) == 0
    reasons = disconnect_reasons(data_dir)
    assert reasons[:hanging] == ["connect failed: websocket handshake timeout"] * hanging, reasons
    messages = rec.log_messages()
    assert sum(m.startswith("cannot connect to") for m in messages) == hanging
    assert sum(m.startswith("reconnecting to") for m in messages) == hanging
    assert connection_events(watch) == ["disconnected"] * hanging + ["connected", "disconnected"]
    assert all("sk-e2e" not in m for m in messages)


def test_a_peer_closing_before_the_handshake_is_a_failed_connect(
    tmp_path: Path, data_dir: Path
) -> None:
    """TCP accepted, then closed without a word: not "connected", and it backs off."""
    closing = 2

    def script(peer: Peer) -> None:
        if peer.index < closing:
            peer.read_request()
            peer.sock.close()  # accept, read the upgrade, close: no handshake answer
            return
        peer.handshake()
        peer.subscribe()
        peer.send(ack(1, 0), *(push(s) for s in range(1, 51)))
        peer.serve_commands(lambda _: None)

    watch = JournalWatch(data_dir / "journal")
    with (
        ScriptedVenue(script) as venue,
        Recorder(tmp_path, data_dir, venue.url, CHANNELS) as rec,
    ):
        rec.start()
        rec.until(lambda: watch.poll().max_seq.get(STREAM, 0) >= 50, "recording at last")
        assert rec.stop(signal.SIGTERM) == 0
    reasons = disconnect_reasons(data_dir)
    want = "connect failed: closed before the WebSocket handshake"
    assert reasons[:closing] == [want] * closing, reasons
    assert connection_events(watch) == ["disconnected"] * closing + ["connected", "disconnected"]
    messages = rec.log_messages()
    assert sum(m.startswith("connected to") for m in messages) == 1


# -- (d) data before the subscription ack --------------------------------------------------------
def test_pushes_before_the_ack_are_recorded_in_order(tmp_path: Path, data_dir: Path) -> None:
    """Seqs 1..50 arrive before the ack (first_seq 51), 51..100 after: all 100, exactly once."""

    def script(peer: Peer) -> None:
        peer.handshake()
        peer.subscribe()
        peer.send(*(push(s) for s in range(1, 51)))
        peer.send(ack(51, 50), *(push(s) for s in range(51, 101)))
        peer.serve_commands(lambda _: None)

    watch = JournalWatch(data_dir / "journal")
    with ScriptedVenue(script) as venue, Recorder(tmp_path, data_dir, venue.url, CHANNELS) as rec:
        rec.start()
        rec.until(lambda: watch.poll().max_seq.get(STREAM, 0) >= 100, "seq 100")
        rec.until(lambda: stream_status(data_dir).get("records") == 100, "SQLite at seq 100")
        assert rec.stop(signal.SIGTERM) == 0
    row = stream_status(data_dir)
    assert (row["first_seq"], row["last_seq"], row["duplicates"], row["gaps_open"]) == (
        1,
        100,
        0,
        0,
    )
    assert gaps(data_dir) == [] and status(data_dir)["counters"]["malformed"] == 0


# -- (e) a venue restart: seqs go back to 1 ------------------------------------------------------
def test_seq_back_to_one_mid_connection_is_a_venue_reset(tmp_path: Path, data_dir: Path) -> None:
    """5000 seqs, then the venue's numbering restarts at 1: recorded, not dropped as duplicates."""

    def script(peer: Peer) -> None:
        peer.handshake()
        peer.subscribe()
        peer.send(ack(1, 0), *(push(s) for s in range(1, 5001)))
        peer.send(*(push(s) for s in range(1, 301)))
        peer.serve_commands(lambda _: None)

    watch = JournalWatch(data_dir / "journal")
    with ScriptedVenue(script) as venue, Recorder(tmp_path, data_dir, venue.url, CHANNELS) as rec:
        rec.start()
        rec.until(lambda: watch.poll().inbound >= 5301, "both epochs journaled")
        rec.until(lambda: stream_status(data_dir).get("last_seq") == 300, "SQLite past the reset")
        assert rec.stop(signal.SIGTERM) == 0
    row = stream_status(data_dir)
    assert (row["records"], row["duplicates"], row["gaps_open"]) == (5300, 0, 0)
    assert status(data_dir)["counters"]["venue_resets"] == 1
    [marker] = gaps(data_dir)
    assert (marker["state"], marker["reason"]) == ("lost", "venue reset: seq 5000 then 1")
    assert marker["from_seq"] is None and marker["from_ns"] <= marker["to_ns"]
    assert any("venue reset: seq 5000 then 1" in m for m in rec.log_messages())
    # Both epochs in full, epoch by epoch: seqs 1..300 of the new one sit beside the old ones.
    want = [(0, s, push(s)) for s in range(1, 5001)] + [(1, s, push(s)) for s in range(1, 301)]

    def exported() -> list[tuple[int, int, bytes]]:
        rows = export(data_dir)[("trade", "BTC.CC")]
        return [(r["epoch"], r["seq"], r["frame"].encode()) for r in rows]

    assert exported() == want
    assert cli("verify", "--data-dir", str(data_dir)).returncode == 0
    # SQLite rebuilt from the journal alone numbers the epochs the same way.
    for path in data_dir.glob("fastfeed.db*"):
        path.unlink()
    assert exported() == want


def test_restarted_venue_acking_below_the_resume_point_is_backfilled(
    tmp_path: Path, data_dir: Path
) -> None:
    """Reconnected after a venue restart: the ack is behind us; the new epoch is backfilled."""
    lock = threading.Lock()
    history: list[bytes] = []  # the restarted venue's epoch

    def script(peer: Peer) -> None:
        peer.handshake()
        resume = peer.subscribe()
        if peer.index == 0:
            peer.send(ack(1, 0), *(push(s) for s in range(1, 2001)))
            # The venue dies: its side of TCP closes without a close frame (shutdown rather
            # than close, so nothing unread turns the FIN into a reset that drops data).
            peer.sock.shutdown(socket.SHUT_WR)
            peer.serve_commands(lambda _: None)
            return
        assert resume == 2001, resume
        with lock:
            history.extend(push(s) for s in range(1, 11))  # published while we were away
            peer.send(ack(11, 10))  # resume past head_seq + 1: first_seq = head_seq + 1
            history.extend(push(s) for s in range(11, 61))
            peer.send(*history[10:])

        def resubscribe(resume: int | None) -> None:
            with lock:
                first = resume or len(history) + 1
                peer.send(ack(first, len(history)), *history[first - 1 :])

        peer.serve_commands(resubscribe)

    with ScriptedVenue(script) as venue, Recorder(tmp_path, data_dir, venue.url, CHANNELS) as rec:
        rec.start()

        def backfilled() -> list[dict[str, Any]] | None:
            if not (data_dir / "fastfeed.db").exists():
                return None
            ledger = gaps(data_dir)
            return ledger if any(g["state"] == "filled" for g in ledger) else None

        ledger = rec.until(backfilled, "the new epoch's first seqs backfilled")
        assert rec.stop(signal.SIGTERM) == 0
    reset, filled = sorted(ledger, key=lambda g: g["from_ns"])
    assert (reset["state"], reset["reason"]) == (
        "lost",
        "venue reset: asked to resume at 2001, acked 11",
    )
    assert (filled["state"], filled["from_seq"], filled["to_seq"]) == ("filled", 1, 10)
    assert status(data_dir)["counters"]["venue_resets"] == 1
    assert len(venue.peers) == 2
