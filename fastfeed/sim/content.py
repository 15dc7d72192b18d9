"""Deterministic push messages: (seed, channel, symbol, seq) fixes every byte of a frame.

Each stream (channel + symbol) is a random walk driven by a counter-based generator
(splitmix64 of a per-stream key plus the seq), so the same seed always publishes the same bytes
and a replayed seq is byte-identical to the live one. The walk carries state (mid price, cumulative
volume) from one seq to the next, so :class:`StreamGenerator` produces seqs in order at O(1) each;
:func:`message` recomputes any seq from scratch at O(seq) and is the reference tests compare to.
Timestamps come from a content clock (``SIM_EPOCH_MS + seq * SIM_TIMESTAMP_STEP_MS``), never the
wall clock. Prices are cents, sizes whole units, both written as strings as TickDB does.
"""

from __future__ import annotations

import hashlib

import orjson

from fastfeed.defaults import SIM_DEPTH_LEVELS, SIM_EPOCH_MS, SIM_TIMESTAMP_STEP_MS
from fastfeed.venues.tickdb import CHANNELS

__all__ = ["StreamGenerator", "message", "splitmix64", "stamp"]
_M64 = (1 << 64) - 1
_MIN_TICKS = 100  # the walk reflects at $1.00 so books never reach zero
_DATA = b',"data":'
_STEPS = (-1, 0, 0, 1)  # walk step in ticks for the low two bits of a draw
_SIZES = tuple(f'"{100 * (1 + i % 50)}"' for i in range(64))  # depth size for a 6-bit slice


def splitmix64(x: int) -> int:
    """One splitmix64 output for counter ``x``: a cheap, well-mixed 64-bit hash of an integer."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


_price_cache: dict[int, str] = {}


def _price(ticks: int) -> str:
    """A price in cents as a quoted decimal string; cached since the walk revisits prices."""
    text = _price_cache.get(ticks)
    if text is None:
        whole, cents = divmod(ticks, 100)
        text = f'"{whole}.{cents:02d}"'
        if len(_price_cache) < 1_000_000:
            _price_cache[ticks] = text
    return text


class StreamGenerator:
    """Produces one stream's messages in seq order; ``next()`` returns the frame for ``seq + 1``."""

    __slots__ = (
        "_key",
        "_levels",
        "_mid",
        "_prefix",
        "_suffix",
        "_volume",
        "channel",
        "seq",
        "symbol",
    )

    def __init__(
        self,
        seed: int,
        channel: str,
        symbol: str,
        *,
        plain: bool = False,
        depth_levels: int = SIM_DEPTH_LEVELS,
    ) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        self.channel = channel
        self.symbol = symbol
        self.seq = 0
        digest = hashlib.blake2b(f"{seed}\0{channel}\0{symbol}".encode(), digest_size=8).digest()
        self._key = int.from_bytes(digest, "big")
        # Start between $10 and $500 so different symbols look different.
        self._mid = 1000 + self._key % 49_000
        self._volume = 0
        self._levels = depth_levels
        quoted = orjson.dumps(symbol).decode()
        # Frame = prefix + seq + suffix + body; plain TickDB has no seq, so all of it is prefix.
        data = f'"data":{{"symbol":{quoted},'
        if plain:
            self._prefix, self._suffix = f'{{"cmd":"{channel}",{data}', None
        else:
            self._prefix, self._suffix = f'{{"cmd":"{channel}","seq":', f",{data}"

    def next(self) -> bytes:
        """The exact frame text of the next seq; advances the walk by one step."""
        self.seq = seq = self.seq + 1
        r = splitmix64(self._key ^ (seq * 0x9E3779B97F4A7C15 & _M64))
        mid = self._mid + _STEPS[r & 3]
        if mid < _MIN_TICKS:
            mid = _MIN_TICKS + 1
        self._mid = mid
        spread = 1 + ((r >> 2) & 1)
        ts = SIM_EPOCH_MS + seq * SIM_TIMESTAMP_STEP_MS
        suffix = self._suffix
        head = self._prefix if suffix is None else f"{self._prefix}{seq}{suffix}"
        channel = self.channel
        if channel == "depth":
            body = self._depth(r, mid, spread)
        elif channel == "trade":
            buy = (r >> 3) & 1
            price = mid + spread if buy else mid
            qty = 1 + (r >> 8) % 500
            side = "buy" if buy else "sell"
            body = f'"price":{_price(price)},"quantity":"{qty}","side":"{side}",'
        else:
            self._volume += 1 + (r >> 8) % 1000
            body = f'"last":{_price(mid)},"volume":"{self._volume}",'
        return f'{head}{body}"timestamp":{ts}}}}}'.encode()

    def _depth(self, r: int, mid: int, spread: int) -> str:
        # Sizes: 6-bit slices of two more mixes of r, one per level and side; bids strictly below
        # asks, bids descending and asks ascending one tick apart.
        bits = splitmix64(r)
        bids = []
        asks = []
        for i in range(self._levels):
            if i == 5:
                bits = splitmix64(bits)  # 64 bits cover five levels of both sides
            shift = 12 * (i % 5)
            bids.append(f"[{_price(mid - i)},{_SIZES[(bits >> shift) & 63]}]")
            asks.append(f"[{_price(mid + spread + i)},{_SIZES[(bits >> (shift + 6)) & 63]}]")
        return f'"bids":[{",".join(bids)}],"asks":[{",".join(asks)}],'


def message(
    seed: int,
    channel: str,
    symbol: str,
    seq: int,
    *,
    plain: bool = False,
    depth_levels: int = SIM_DEPTH_LEVELS,
) -> bytes:
    """The frame for one seq, recomputed from seq 1 (O(seq)): the reference for tests."""
    if seq < 1:
        raise ValueError(f"seq starts at 1, got {seq}")
    gen = StreamGenerator(seed, channel, symbol, plain=plain, depth_levels=depth_levels)
    for _ in range(seq - 1):
        gen.next()
    return gen.next()


def stamp(frame: bytes, sent_ns: int) -> bytes:
    """The frame with ``"sent_ns"`` inserted before ``"data"`` (opt-in; not replayable)."""
    at = frame.index(_DATA)
    return b'%b,"sent_ns":%d%b' % (frame[:at], sent_ns, frame[at:])
