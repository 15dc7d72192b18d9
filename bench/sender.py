"""A venue that is never the bottleneck: pre-framed WebSocket bytes written from a raw socket.

``python -m bench.sender --frames N --streams S`` builds N sequenced simulator depth frames
round-robin over S streams, frames them as unmasked server frames (RFC 6455 §5.2) into one
buffer, then serves one client: answers
the upgrade (§4.2.2), waits for its first frame (the subscribe), and writes the buffer with
``sendall`` from a blocking socket, so sending costs the kernel's copy and nothing else. It
prints ``ws://127.0.0.1:PORT/`` once listening and exits when the client disconnects.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import socket
import struct
import sys

from fastfeed.sim.content import StreamGenerator

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


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


def serve(buffer: bytes) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        print(f"ws://127.0.0.1:{server.getsockname()[1]}/", flush=True)
        conn, _ = server.accept()
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
            conn.sendall(buffer)
            while conn.recv(65536):  # until the client closes
                pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sender")
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--levels", type=int, default=3, help="book levels: ~205-byte frames")
    args = parser.parse_args()
    buffer = b"".join(frame(p) for p in payloads(args.frames, args.streams, args.levels))
    try:
        serve(buffer)
    except (BrokenPipeError, ConnectionResetError):
        sys.exit(0)


if __name__ == "__main__":
    main()
