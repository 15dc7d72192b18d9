"""The zipapp's start-up check: interpreter fit, the unpack directory, pruning old unpackings."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from fastfeed import __version__, _boot, cli
from fastfeed._boot import hold, interpreter_problem, platform_tag, prune, python_tag, root_problem


def build_for(tag: str, platform: str) -> dict[str, str]:
    return {"VERSION": __version__, "PYTHON_TAG": tag, "PLATFORM": platform}


def unpacking(root: Path, name: str) -> Path:
    (root / name / "site-packages").mkdir(parents=True)
    (root / f".{name}_lock").touch()
    return root / name


def test_a_build_for_this_interpreter_fits() -> None:
    assert interpreter_problem(build_for(python_tag(), platform_tag()), "f.pyz") is None


def test_another_python_is_one_line_naming_both_tags_and_the_file_that_fits() -> None:
    problem = interpreter_problem(build_for("cp399", platform_tag()), "fastfeed.pyz")
    assert problem is not None and "\n" not in problem
    assert f"built for cp399 {platform_tag()} but this is {python_tag()}" in problem
    assert f"use fastfeed-{__version__}-{python_tag()}-{platform_tag()}.pyz" in problem


def test_another_platform_does_not_fit() -> None:
    problem = interpreter_problem(build_for(python_tag(), "macosx_14_0_arm64"), "f.pyz")
    assert problem is not None and "macosx_14_0_arm64" in problem


def test_unpack_root_is_made_when_missing(tmp_path: Path) -> None:
    root = tmp_path / "cache" / "fastfeed"
    assert root_problem(root) is None
    assert root.is_dir()


def test_unusable_unpack_root_says_what_to_set(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    problem = root_problem(tmp_path / "file" / "shiv")
    assert problem is not None and "\n" not in problem
    assert "Not a directory" in problem and "set SHIV_ROOT" in problem


def test_prune_removes_other_fastfeed_builds_not_in_use(tmp_path: Path) -> None:
    ours = unpacking(tmp_path, f"fastfeed.pyz_{'a' * 64}")
    old = unpacking(tmp_path, f"fastfeed-0.0.9-cp311-linux_x86_64.pyz_{'b' * 64}")
    (tmp_path / f"{old.name}.tmp").mkdir()  # an unpacking cut short
    foreign = unpacking(tmp_path, f"other.pyz_{'c' * 64}")
    assert prune(tmp_path, keep=ours.name) == [old.name, f"{old.name}.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [ours.name, f".{ours.name}_lock", foreign.name, f".{foreign.name}_lock"]
    )


def test_prune_keeps_a_build_a_running_process_holds(tmp_path: Path) -> None:
    old = unpacking(tmp_path, f"fastfeed.pyz_{'b' * 64}")
    fd = hold(tmp_path, old.name)
    assert fd is not None
    try:
        assert prune(tmp_path, keep=f"fastfeed.pyz_{'a' * 64}") == []
        assert old.is_dir()
    finally:
        os.close(fd)
    assert prune(tmp_path, keep=f"fastfeed.pyz_{'a' * 64}") == [old.name]


def test_prune_skips_a_build_being_unpacked(tmp_path: Path) -> None:
    old = unpacking(tmp_path, f"fastfeed.pyz_{'b' * 64}")
    fd = os.open(tmp_path / f".{old.name}_lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what shiv holds while it unpacks
    try:
        assert prune(tmp_path, keep=f"fastfeed.pyz_{'a' * 64}") == []
    finally:
        os.close(fd)


def test_hold_asks_for_an_unpacking_when_a_prune_removed_it(tmp_path: Path) -> None:
    name = f"fastfeed.pyz_{'b' * 64}"
    assert hold(tmp_path, name) is None  # never unpacked
    unpacking(tmp_path, name)
    fd = hold(tmp_path, name)
    assert fd is not None
    os.close(fd)


def test_a_refused_start_exits_with_the_usage_code_systemd_does_not_retry() -> None:
    assert _boot.EXIT_USAGE == cli.EXIT_USAGE == 2
