"""The layout is the architecture: the sans-I/O rooms load no I/O, dependencies point one way
(docs/architecture.md), and no module imports itself back through another."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastfeed"
# What a sans-I/O module must not pull in, directly or through anything it imports.
IO_MODULES = ("sqlite3", "asyncio", "threading", "socket", "fastfeed.journal._wal")
# Known exceptions, each to be deleted by the change that makes it pass: the pipeline still
# logs (logging loads threading) and takes its row types from store.py (sqlite3).
IMPURE_FOR_NOW = frozenset({"fastfeed.derive.pipeline"})
# room -> rooms it must never import (a room is a package under fastfeed/, or store.py).
FORBIDDEN = {
    "journal": {"recorder", "tools"},
    "venues": {"recorder", "tools"},
    "derive": {"recorder", "tools"},
    "store": {"recorder", "tools"},
    "tools": {"recorder"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
SANS_IO = sorted(m for m in MODULES if m.split(".")[1:2] in (["venues"], ["derive"]))


def loaded_by(module: str) -> list[str]:
    """The I/O modules present in ``sys.modules`` after importing ``module`` in a fresh
    interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps([m for m in {IO_MODULES!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    found: list[str] = json.loads(proc.stdout)
    return found


@pytest.mark.parametrize("module", [m for m in SANS_IO if m not in IMPURE_FOR_NOW])
def test_a_sans_io_module_loads_no_io(module: str) -> None:
    assert loaded_by(module) == []


@pytest.mark.parametrize("module", sorted(IMPURE_FOR_NOW))
def test_each_known_exception_is_still_needed(module: str) -> None:
    assert loaded_by(module) != [], f"{module} is sans-I/O now: delete it from IMPURE_FOR_NOW"


@pytest.mark.parametrize("module", SANS_IO)
def test_a_sans_io_module_never_reads_the_clock(module: str) -> None:
    # ``time`` is loaded by the interpreter itself, so only a direct import can be checked.
    tree = ast.parse(MODULES[module].read_text())
    named = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    named |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "time" not in named


def test_the_check_covers_the_rooms_and_sees_a_violation() -> None:
    assert {"fastfeed.venues.tickdb", "fastfeed.derive.sequence"} <= set(SANS_IO)
    assert "fastfeed.journal._wal" in loaded_by("fastfeed.journal.writer")


def imports(path: Path) -> set[str]:
    """Every fastfeed module ``path`` imports: top level, in functions and for type checking."""
    found: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = (package or module_name(path)).split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m in MODULES}


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_dependencies_between_rooms_point_one_way() -> None:
    wrong = sorted(
        f"{src} imports {dst}"
        for src, dsts in GRAPH.items()
        for dst in dsts
        if room(dst) in FORBIDDEN.get(room(src), set())
    )
    assert wrong == []


def test_no_import_cycle() -> None:
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_graph_sees_imports_of_every_kind() -> None:
    assert "fastfeed.journal.writer" in GRAPH["fastfeed.journal"]  # for type checking only
    assert "fastfeed.store" in GRAPH["fastfeed.tools.reports"] | GRAPH["fastfeed.catchup"]
