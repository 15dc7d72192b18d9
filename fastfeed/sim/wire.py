"""Server-side WebSocket framing and permessage-deflate, for pre-framed batched writes.

picows' ``WSTransport.send`` writes one frame per call (one ``write`` each). To keep the
simulator from being the bottleneck of a benchmark, the server builds many frames itself and
hands them to the underlying transport in one large write. Server frames are never masked
(RFC 6455 section 5.1), so a frame is just FIN|RSV1|opcode, a length, and the payload
(section 5.2). picows does not negotiate permessage-deflate (RFC 7692); the simulator does it
itself: it answers the client's offer in the handshake and sets RSV1 on compressed frames.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["OP_BINARY", "OP_TEXT", "Deflate", "frame_header", "negotiate_deflate"]

OP_TEXT = 0x1
OP_BINARY = 0x2
_FIN = 0x80
_RSV1 = 0x40
_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 section 7.2.1: stripped after a sync flush
_MIN_WBITS = 9  # zlib cannot produce raw deflate with an 8-bit window


def frame_header(opcode: int, length: int, *, compressed: bool = False) -> bytes:
    """The header of one unmasked, unfragmented server frame (RFC 6455 section 5.2)."""
    b0 = _FIN | (_RSV1 if compressed else 0) | opcode
    if length < 126:
        return bytes((b0, length))
    if length < 65536:
        return struct.pack("!BBH", b0, 126, length)
    return struct.pack("!BBQ", b0, 127, length)


class Deflate:
    """The negotiated permessage-deflate state of one connection (both directions)."""

    def __init__(self, server_wbits: int, server_no_context_takeover: bool) -> None:
        self._wbits = server_wbits
        self._reset = server_no_context_takeover
        self._compressor = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -server_wbits
        )
        # Inbound: a 15-bit window reads any client window size; keeping context is harmless
        # when the client resets its own.
        self._decompressor = zlib.decompressobj(-15)

    def compress(self, payload: bytes) -> bytes:
        """One message compressed as RFC 7692 section 7.2.1 says (sync flush, tail removed)."""
        if self._reset:
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._wbits
            )
        data = self._compressor.compress(payload) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4] if data.endswith(_TAIL) else data

    def decompress(self, payload: bytes, max_size: int) -> bytes:
        """One compressed client message; raises ValueError past ``max_size`` or on bad data."""
        try:
            data = self._decompressor.decompress(payload + _TAIL, max_size + 1)
        except zlib.error as exc:
            raise ValueError(f"bad deflate data: {exc}") from exc
        if len(data) > max_size or self._decompressor.unconsumed_tail:
            raise ValueError(f"decompressed message larger than {max_size} bytes")
        return data


def negotiate_deflate(offers: str | None) -> tuple[str, Deflate] | None:
    """Accept the first acceptable permessage-deflate offer: the response header and state."""
    if not offers:
        return None
    for offer in offers.split(","):
        name, *params = (p.strip() for p in offer.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        accepted = ["permessage-deflate"]
        wbits = 15
        no_context = False
        ok = True
        for param in params:
            key, _, value = param.partition("=")
            key = key.strip().lower()
            value = value.strip().strip('"')
            if key == "server_no_context_takeover":
                no_context = True
                accepted.append(key)
            elif key == "server_max_window_bits":
                if not value.isdigit() or not _MIN_WBITS <= int(value) <= 15:
                    ok = False
                    break
                wbits = int(value)
                accepted.append(f"{key}={wbits}")
            elif key in ("client_no_context_takeover", "client_max_window_bits"):
                continue  # our inflater reads any client window, with or without context
            else:
                ok = False  # RFC 7692 section 5.1: decline an offer with an unknown parameter
                break
        if ok:
            return "; ".join(accepted), Deflate(wbits, no_context)
    return None
