"""Security end to end: verified TLS, hostile venue input kept as data, private files, loopback.

The TLS venue is a few lines of picows with a self-signed certificate made by ``openssl`` for
this test; it also sends symbols shaped like a path and like SQL, which must end up as data
(or be refused as malformed), never as a file name or a statement.
"""

from __future__ import annotations

import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import REPO, JournalWatch, Recorder, Simulator, cli, export, status

__all__: list[str] = []

CHANNELS = {"trade": ["AAPL.US"]}
PATH_SYMBOL = "../../../../tmp/ff-evil"  # a valid symbol (letters . / -) that reads as a path
SQL_SYMBOL = "x');DROP TABLE messages;--"  # not a valid symbol: refused as malformed

# A TLS venue: acks any subscribe, then pushes one ordinary trade, one with a path-like symbol
# and one with an SQL-like symbol. Prints its port once listening.
VENUE = """
import asyncio, ssl, sys, orjson, picows

PUSHES = [("AAPL.US", 1), (sys.argv[3], 1), (sys.argv[4], 1)]

class Venue(picows.WSListener):
    def on_ws_frame(self, transport, frame):
        if frame.msg_type != picows.WSMsgType.TEXT:
            return
        doc = orjson.loads(frame.get_payload_as_bytes())
        if doc.get("cmd") != "subscribe":
            return
        ack = {"cmd": "subscribe", "code": 0, "message": "success", "data": doc["data"]}
        transport.send(picows.WSMsgType.TEXT, orjson.dumps(ack))
        for symbol, seq in PUSHES:
            push = {"cmd": "trade", "seq": seq, "data": {"symbol": symbol, "price": "1.5",
                    "quantity": "2", "side": "buy", "timestamp": 1732406400000}}
            transport.send(picows.WSMsgType.TEXT, orjson.dumps(push))

async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await picows.ws_create_server(lambda request: Venue(), "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (skipped without openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = tmp_path / "venue.crt", tmp_path / "venue.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_venue(certificate: tuple[Path, Path]) -> Iterator[str]:
    """The TLS venue in a subprocess; yields its wss:// URL."""
    cert, key = certificate
    args = [sys.executable, "-c", VENUE, str(cert), str(key), PATH_SYMBOL, SQL_SYMBOL]
    with subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        try:
            assert port.isdigit(), f"TLS venue printed {port!r}"
            yield f"wss://127.0.0.1:{port}/v1/realtime"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_tls_is_verified_refused_without_the_ca_and_accepted_with_it(
    tls_venue: str, certificate: tuple[Path, Path], tmp_path: Path, data_dir: Path
) -> None:
    watch = JournalWatch(data_dir / "journal")
    with Recorder(tmp_path, data_dir, tls_venue, CHANNELS) as rec:
        rec.start()
        # No --ca-file: the self-signed certificate fails verification (no silent fallback).
        rec.until(
            lambda: any("CERTIFICATE_VERIFY_FAILED" in m for m in rec.log_messages()),
            "a refused TLS handshake",
        )
        assert rec.stop(signal.SIGTERM) == 0
        assert watch.poll().inbound == 0 and watch.connected == 0

        rec.args = [*rec.args, "--ca-file", str(certificate[0])]
        rec.start()
        rec.until(lambda: watch.poll().inbound >= 4, "the ack and three pushes over TLS")
        assert rec.stop(signal.SIGTERM) == 0
        # This venue never answers the close frame: the stop aborts it and still takes the
        # final snapshot (SQLite level with the journal) rather than running out the clock.
        stopped = [m for m in rec.log_messages() if m.startswith("stopped: ")][-1]
        durable, applied = re.findall(r"LSN (\d+)", stopped)
        assert durable == applied, stopped

    # The venue's symbols are data: the path-like one is a stream like any other, the SQL-like
    # one was refused as malformed, and neither touched the file system or the schema.
    streams = export(data_dir)
    assert sorted(streams) == [("trade", PATH_SYMBOL), ("trade", "AAPL.US")]
    assert [row["seq"] for row in streams[("trade", PATH_SYMBOL)]] == [1]
    state = status(data_dir)
    assert state["counters"]["malformed"] == 1
    assert not Path("/tmp/ff-evil").exists()
    assert not any("evil" in p.name for p in tmp_path.rglob("*"))


def test_data_dir_is_private_and_stays_so_after_read_only_commands(
    sim: Simulator, tmp_path: Path, data_dir: Path
) -> None:
    watch = JournalWatch(data_dir / "journal")
    with Recorder(
        tmp_path, data_dir, sim.url, {"depth": ["AAPL.US"]}, "--segment-mib", "17"
    ) as rec:
        rec.start()
        rec.until(lambda: watch.poll().inbound >= 500, "some recording")
        assert rec.stop(signal.SIGTERM) == 0
    # The read-only commands once caught SQLite up and prepared the next journal segment if it
    # was missing (a recorder killed before it prepared one); now they create nothing. Run them
    # under a permissive umask, as an operator's shell would have, with that segment gone.
    *_, prepared = sorted((data_dir / "journal").glob("seg-*.wal"))
    prepared.unlink()
    for command in ("status", "gaps", "export"):
        proc = subprocess.run(
            [
                *("sh", "-c", 'umask 022 && exec "$@"', "sh", sys.executable, "-m", "fastfeed"),
                *(command, "--data-dir", str(data_dir)),
            ],
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
    modes = {
        str(p.relative_to(data_dir)): stat.S_IMODE(p.stat().st_mode)
        for p in [data_dir, *data_dir.rglob("*")]
    }
    assert modes["."] == 0o700 and modes["journal"] == 0o700
    assert f"journal/{prepared.name}" not in modes  # read-only commands create no file
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert loose == {}, f"readable by others: {loose}"


def test_the_simulator_binds_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    with Simulator(tmp_path) as sim:
        port = int(sim.url.split(":")[2].split("/")[0])
        listening = _listening_addresses(port)
    assert listening == ["127.0.0.1"], listening
    help_text = cli("sim", "--help").stdout
    assert "127.0.0.1" in help_text


def _listening_addresses(port: int) -> list[str]:
    """IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            if len(address) == 8:
                found.append(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                found.append(re.sub(r"(....)", r"\1:", address).rstrip(":"))
    return found


def test_no_code_path_turns_certificate_verification_off() -> None:
    # The TLS test above proves the default verifies; this keeps a quiet "verify off" switch
    # from being added anywhere in the package later.
    switches = ("CERT_NONE", "check_hostname = False", "_create_unverified_context")
    hits = [
        f"{path.relative_to(REPO)}: {switch}"
        for path in (REPO / "fastfeed").rglob("*.py")
        for switch in switches
        if switch in path.read_text()
    ]
    assert hits == []
