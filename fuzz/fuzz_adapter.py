"""atheris harness: any bytes, as any journal record kind, through adapter, pipeline and SQLite.

The contract is ``check_records`` in tests/venues/test_tickdb_fuzz.py (the hypothesis tests
run the same one). Input layout: records separated by 0xFF (a byte valid UTF-8, hence JSON,
never holds); a record's first byte picks its kind (byte % 6 + 1) and the binary flag (bit 7),
the rest is its payload. See fuzz/README.md for how to run it.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "venues"))

with atheris.instrument_imports(include=["fastfeed"]):
    import fastfeed.derive.pipeline
    import fastfeed.derive.sequence
    import fastfeed.store
    import fastfeed.venues.tickdb  # noqa: F401  (instrumented for coverage)

import test_tickdb_fuzz as contract  # noqa: E402

SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None  # SQLite in RAM: more execs/s
SEPARATOR = b"\xff"


def records(data: bytes) -> list[contract.Record]:
    """Split one fuzz input into journal records (see the module docstring)."""
    out: list[contract.Record] = []
    for chunk in data.split(SEPARATOR)[:32] if data else []:
        selector, payload = (chunk[0], chunk[1:]) if chunk else (0, b"")
        out.append((selector % 6 + 1, payload, bool(selector & 0x80)))
    return out


def test_one_input(data: bytes) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        contract.check_records(records(data), Path(tmp))


def seed(corpus: Path) -> None:
    """Fill an empty corpus directory with every fixture frame as an INBOUND record."""
    if corpus.is_dir() and not any(corpus.iterdir()):
        for path in sorted((REPO / "tests" / "fixtures" / "tickdb").glob("*.json")):
            (corpus / path.stem).write_bytes(b"\x00" + path.read_bytes().strip())


def main() -> None:
    logging.disable(logging.WARNING)  # a "malformed frame" line per input: slow and useless here
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            seed(Path(arg))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
