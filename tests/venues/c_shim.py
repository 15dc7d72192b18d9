"""Compile a test-only C shim around the venues' scanner headers, for ctypes to call.

The scanners are headers compiled into the Cython sink; compiling them again here, alone, tests
the header itself (not the sink's copy) with the compiler's strictest warnings.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["VENUES", "compile_shim"]

VENUES = Path(__file__).resolve().parents[2] / "fastfeed" / "venues"


def compile_shim(work: Path, source: str) -> ctypes.CDLL:
    """``source`` built in ``work`` as a shared library (headers from fastfeed/venues/)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("no C compiler: the journal extension needs one too")
    (work / "shim.c").write_text(source)
    lib = work / "shim.so"
    flags = ["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(VENUES)]
    subprocess.run([compiler, *flags, "-o", str(lib), str(work / "shim.c")], check=True)
    return ctypes.CDLL(str(lib))
