"""CRC32C: known vectors, and the hardware and software paths agree."""

from __future__ import annotations

import random

import pytest

from fastfeed.journal._wal import crc32c, crc32c_sw

VECTORS = [
    (b"", 0, 0x00000000),
    (b"123456789", 0, 0xE3069283),
    (bytes(32), 0, 0x8A9136AA),
    (b"\xff" * 32, 0, 0x62A8AB43),
    (bytes(range(32)), 0, 0x46DD794E),
    (bytes(range(31, -1, -1)), 0, 0x113FDB5C),
]


@pytest.mark.parametrize(("data", "seed", "expected"), VECTORS)
@pytest.mark.parametrize("fn", [crc32c, crc32c_sw])
def test_known_vectors(fn: object, data: bytes, seed: int, expected: int) -> None:
    assert callable(fn)
    assert fn(data, seed) == expected


def test_seed_continues_a_running_crc() -> None:
    data = b"fastfeed journal record bytes"
    for cut in range(len(data) + 1):
        assert crc32c(data[cut:], crc32c(data[:cut])) == crc32c(data)
        assert crc32c_sw(data[cut:], crc32c_sw(data[:cut])) == crc32c(data)


def test_hardware_and_software_agree_on_random_data() -> None:
    rng = random.Random(7)
    for _ in range(300):
        size = rng.randrange(0, 600)
        data = rng.randbytes(size)
        seed = rng.randrange(0, 2**32)
        start = rng.randrange(0, 8)  # misaligned starts exercise the byte-wise head loop
        view = memoryview(data)[min(start, size) :]
        assert crc32c(view, seed) == crc32c_sw(view, seed)


def test_accepts_every_contiguous_buffer() -> None:
    data = b"123456789"
    assert crc32c(bytearray(data)) == crc32c(memoryview(data)) == 0xE3069283


def test_rejects_non_buffers() -> None:
    with pytest.raises(TypeError):
        crc32c("text")  # type: ignore[arg-type]
