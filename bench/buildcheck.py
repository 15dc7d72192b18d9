"""Refuse to measure a build whose numbers would mean nothing: debug or not compiled."""

from __future__ import annotations

import importlib.machinery
import sys

from fastfeed.journal import _wal


def build_problem() -> str | None:
    """Why this build must not be benchmarked, or None when it is an optimised extension."""
    path = getattr(_wal, "__file__", "") or ""
    if not path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return (
            f"fastfeed.journal._wal is not a compiled extension ({path or 'no file'}): pure Python"
        )
    if _wal.DEBUG_BUILD:
        return (
            "fastfeed.journal._wal is a FASTFEED_DEBUG=1 build (-O0, line tracing): rebuild with "
            "`python setup.py build_ext --inplace` before benchmarking"
        )
    return None


def require_release_build() -> None:
    """Exit with one line on stderr if the build is not fit to benchmark."""
    problem = build_problem()
    if problem is not None:
        print(f"bench: refusing to run: {problem}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    require_release_build()
    print(f"bench: release build, hardware CRC32C: {_wal.HAVE_HW_CRC32C}")
