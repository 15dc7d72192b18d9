"""Test child: append deterministic records to a journal until it is killed or the disk fills.

``python journal_crash_child.py DIR [SEGMENT_BYTES]`` opens the journal in DIR in group-commit
mode, writes ``ready <recovered LSN>`` to stdout, then after every append
``<accepted LSN> <durable LSN>``. Each line is one write(2) on the pipe, so the parent sees
exactly what was accepted before it sent SIGKILL. On DiskFull it writes ``disk-full <message>``,
closes the journal and exits 0.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SEGMENT_BYTES = 16 * 1024  # small segments: a rollover every dozen records or so


def payload(lsn: int) -> bytes:
    """The payload of record ``lsn``: its size and bytes follow from the LSN alone."""
    size = (lsn * 7919) % 1000
    return (lsn.to_bytes(8, "little") * (size // 8 + 1))[:size]


def main() -> None:
    from fastfeed.errors import DiskFull
    from fastfeed.journal import Journal

    segment_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else SEGMENT_BYTES
    journal = Journal.open(Path(sys.argv[1]), segment_bytes=segment_bytes, min_free_bytes=0)
    os.write(1, f"ready {journal.accepted_lsn}\n".encode())
    lsn = journal.accepted_lsn
    try:
        while True:
            lsn += 1
            assert journal.append(1, lsn % 5, lsn, payload(lsn), lsn & 1) == lsn
            os.write(1, f"{lsn} {journal.durable_lsn}\n".encode())
    except DiskFull as exc:
        os.write(1, f"disk-full {exc}\n".encode())
    journal.close()


if __name__ == "__main__":
    main()
