"""What this copy of fastfeed is, for ``fastfeed --version``.

A zipapp built by scripts/build_pyz.sh carries ``fastfeed/_build_info.py`` (commit, Python tag,
platform, build date); an install from source has no such file and says so.
"""

from __future__ import annotations

import importlib

from fastfeed import __version__

__all__ = ["version_text"]


def version_text() -> str:
    """One line: the version, then the commit, Python tag, platform and date of the build."""
    try:
        info = importlib.import_module("fastfeed._build_info")
    except ModuleNotFoundError:
        return f"fastfeed {__version__} (from source: no build info)"
    return (
        f"fastfeed {info.VERSION} (commit {info.COMMIT}, "
        f"{info.PYTHON_TAG} {info.PLATFORM}, built {info.BUILT})"
    )
