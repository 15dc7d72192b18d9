"""A venue that is never the bottleneck: pre-framed WebSocket bytes written from a raw socket.

``python -m bench.sender --frames N --streams S`` builds N sequenced simulator depth frames
round-robin over S streams, frames them as unmasked server frames (RFC 6455 §5.2) into one
buffer, then serves one client: answers
the upgrade (§4.2.2), waits for its first frame (the subscribe), and writes the buffer with
``sendall`` from a blocking socket, so sending costs the kernel's copy and nothing else. It
prints ``ws://127.0.0.1:PORT/`` once listening and exits when the client disconnects.

With ``--rate R`` it paces instead: every millisecond it writes the frames due by then, each
stamped with ``"sent_ns"`` (``CLOCK_REALTIME``, the clock of the journal's ``recv_ns``) taken
just before that write, for latency runs (bench/sink_latency.py).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import socket
import struct
import sys
import time
from collections.abc import Callable

from fastfeed.sim.content import StreamGenerator, stamp

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
# The stamp every paced frame is built with and that each write replaces with the time: 19
# digits like every CLOCK_REALTIME ns until 2286, so frame lengths never change.
PLACEHOLDER_NS = 10**18
_PLACEHOLDER = b'"sent_ns":%d' % PLACEHOLDER_NS
TICK_S = 0.001  # paced mode: one write per millisecond


def frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def payloads(frames: int, streams: int, levels: int) -> list[bytes]:
    """``frames`` sequenced depth pushes, round-robin over ``streams`` symbols."""
    gens = [
        StreamGenerator(1, "depth", f"S{i:04d}.US", depth_levels=levels) for i in range(streams)
    ]
    return [gens[i % streams].next() for i in range(frames)]


def paced(frames: list[bytes], rate: float) -> Callable[[socket.socket], None]:
    """A writer of ``frames`` at ``rate`` per second, stamping each write's frames."""

    def write(conn: socket.socket) -> None:
        start = time.monotonic()
        sent = 0
        while sent < len(frames):
            due = min(len(frames), int((time.monotonic() - start) * rate) + 1)
            if due > sent:
                chunk = b"".join(frames[sent:due])
                conn.sendall(chunk.replace(_PLACEHOLDER, b'"sent_ns":%d' % time.time_ns()))
                sent = due
            time.sleep(TICK_S)

    return write


def serve(write: Callable[[socket.socket], None]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(f"ws://127.0.0.1:{server.getsockname()[1]}/", flush=True)
        conn, _ = server.accept()
        # Paced writes are small: without this, Nagle holds each one for the client's ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            conn.recv(65536)  # the subscribe: the client is ready
            write(conn)
            while conn.recv(65536):  # until the client closes
                pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sender")
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--levels", type=int, default=3, help="book levels: ~205-byte frames")
    parser.add_argument("--rate", type=float, help="msgs/s, stamped (default: one burst)")
    args = parser.parse_args()
    texts = payloads(args.frames, args.streams, args.levels)
    if args.rate:
        write = paced([frame(stamp(p, PLACEHOLDER_NS)) for p in texts], args.rate)
    else:
        buffer = b"".join(frame(p) for p in texts)
        write = lambda conn: conn.sendall(buffer)  # noqa: E731
    try:
        serve(write)
    except (BrokenPipeError, ConnectionResetError):
        sys.exit(0)


if __name__ == "__main__":
    main()
