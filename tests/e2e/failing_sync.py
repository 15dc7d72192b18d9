"""A test fake: ``fastfeed`` whose journal syncs start failing (EIO) once a trigger file exists.

Usage: ``python tests/e2e/failing_sync.py TRIGGER REPORT fastfeed-args...``. The journal's own
``sync_hook`` (the documented injection point) does the real fdatasync until TRIGGER appears,
then fails every call. At exit REPORT holds JSON: the journal's durable LSN when the first sync
failed and at exit, so a test can check that nothing became durable after the failure.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

import orjson

from fastfeed import cli
from fastfeed.journal import Journal
from fastfeed.journal.segments import sync_segment


def main() -> int:
    """Patch Journal.open to pass the failing hook, run the CLI, write the report."""
    trigger, report = Path(sys.argv[1]), Path(sys.argv[2])
    journals: list[Journal] = []
    facts: dict[str, Any] = {"durable_at_failure": None, "failed_syncs": 0}

    def hook(path: str, start: int, end: int) -> int:
        if not trigger.exists():
            return sync_segment(path, start, end, None, None)  # fdatasync: really durable
        if facts["durable_at_failure"] is None:
            facts["durable_at_failure"] = journals[0].durable_lsn
        facts["failed_syncs"] += 1
        return errno.EIO

    real_open = Journal.open

    def open_with_hook(directory: Path, **options: Any) -> Journal:
        journal = real_open(directory, **options, sync_hook=hook)
        journals.append(journal)
        return journal

    Journal.open = open_with_hook  # type: ignore[method-assign]
    code = cli.main(sys.argv[3:])
    facts["durable_at_exit"] = journals[0].durable_lsn if journals else None
    report.write_bytes(orjson.dumps(facts))
    return code


if __name__ == "__main__":
    sys.exit(main())
