"""atheris harness: the C TickDB scanner against the Python adapter, on any bytes.

The contract is ``check_scan`` in tests/venues/test_scan_tickdb.py (the hypothesis tests run
the same one): the scanner declines, or it reads exactly the (channel, symbol, seq) the adapter
reads. The input is one frame. See fuzz/README.md for how to run it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "venues"))

with atheris.instrument_imports(include=["fastfeed"]):
    import fastfeed.venues.tickdb  # noqa: F401  (instrumented for coverage)

import test_scan_tickdb as contract  # noqa: E402


def seed(corpus: Path) -> None:
    """Fill an empty corpus directory with the TickDB fixture frames and simulator frames."""
    if corpus.is_dir() and not any(corpus.iterdir()):
        for i, frame in enumerate(contract.VALID + contract.TICKDB_FRAMES):
            (corpus / f"seed-{i}").write_bytes(frame)


def main() -> None:
    for arg in sys.argv[1:]:
        if not arg.startswith("-"):
            seed(Path(arg))
    atheris.Setup(sys.argv, contract.check_scan)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
