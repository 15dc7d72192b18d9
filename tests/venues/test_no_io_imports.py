"""The protocol core stays sans-I/O: no venue module or the tracker imports I/O or the clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "fastfeed"
FORBIDDEN = {"asyncio", "picows", "socket", "time", "uvloop", "threading", "selectors"}
SANS_IO = [
    *sorted((ROOT / "venues").glob("*.py")),
    ROOT / "derive" / "sequence.py",
    ROOT / "derive" / "continuity.py",
    ROOT / "derive" / "kraken_book.py",
]


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_scan_covers_the_adapter_and_tracker() -> None:
    names = {p.name for p in SANS_IO}
    assert {"events.py", "tickdb.py", "sequence.py", "__init__.py"} <= names


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    assert imported_roots(path) & FORBIDDEN == set()


def test_the_scan_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import os\nfrom time import monotonic_ns\nimport asyncio.tasks\n")
    assert imported_roots(sample) & FORBIDDEN == {"time", "asyncio"}
