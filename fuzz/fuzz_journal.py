"""atheris harness: arbitrary segment files and damaged real journals through reader and recovery.

The contract is ``check_journal`` in tests/test_journal_reader_fuzz.py (the hypothesis tests
run the same one). The first input byte picks the case: 0 raw bytes as segment 0, 1 a
full-size segment with a valid header and the input as its body, 2 the template journal with
mutations (4 bytes each: segment, offset high/low, operation and value). See fuzz/README.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

with atheris.instrument_imports(include=["fastfeed"]):
    pass

import test_journal_reader_fuzz as contract  # noqa: E402

SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None  # fsyncs on tmpfs cost nothing


def mutations(data: bytes) -> list[contract.Mutation]:
    """Each 4 bytes: segment, offset (12 bits), operation (4 bits), value."""
    out = []
    for i in range(0, len(data) - 3, 4):
        seg, hi, lo, value = data[i : i + 4]
        out.append((seg, ((hi << 8) | lo) & 0xFFF, (hi >> 4) % 5, value))
    return out[:8]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        directory = Path(tmp) / "journal"
        case, rest = data[0] % 3, data[1:]
        if case == 2:
            contract.damaged_journal(directory, mutations(rest))
        else:
            contract.raw_segment(directory, rest, with_header=case == 1)
        contract.check_journal(directory)


def main() -> None:
    contract.template_segments()  # build it once, before fuzzing starts
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
