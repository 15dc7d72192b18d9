"""The zipapp's ``__main__``: check the interpreter and the unpack directory, prune, start shiv.

scripts/build_pyz.sh stores this file as the archive's ``__main__.py``. It runs before shiv
unpacks anything and imports only the standard library, so a Python the build does not fit, or
a service user without a writable home, ends in one line naming the fix instead of a traceback
from inside a compiled dependency. The package copy is what the tests import.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

__all__ = [
    "hold",
    "interpreter_problem",
    "main",
    "platform_tag",
    "prune",
    "python_tag",
    "root_problem",
]

# The meaning of fastfeed.cli.EXIT_USAGE (this file cannot import the package before the
# check): a configuration error, which systemd's RestartPreventExitStatus=2 does not retry.
EXIT_USAGE = 2

# shiv unpacks build B of ARCHIVE.pyz into ROOT/ARCHIVE.pyz_B (via ROOT/ARCHIVE.pyz_B.tmp) and
# serialises unpacking with a lock file ROOT/.ARCHIVE.pyz_B_lock (shiv's bootstrap.cache_path
# and extract_site_packages). Only fastfeed's own unpackings are ever pruned.
_UNPACKED = re.compile(r"(?P<base>fastfeed[^/]*\.pyz_[0-9a-f]{64})(\.tmp)?")


def python_tag() -> str:
    """This interpreter's wheel tag: ``cp312``, ``cp313t`` for a free-threaded build."""
    threaded = "t" if "t" in sys.abiflags else ""
    return f"cp{sys.version_info.major}{sys.version_info.minor}{threaded}"


def platform_tag() -> str:
    """This interpreter's platform as wheel names spell it: ``linux_x86_64``."""
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


def interpreter_problem(build: dict[str, Any], archive: str) -> str | None:
    """Why this interpreter cannot run the build, or None when tag and platform match.

    Args:
        build: the archive's ``fastfeed/_build_info.py`` namespace.
        archive: the archive's file name, to name the file that would fit.
    """
    have = (python_tag(), platform_tag())
    want = (build["PYTHON_TAG"], build["PLATFORM"])
    if have == want:
        return None
    fits = f"fastfeed-{build['VERSION']}-{have[0]}-{have[1]}.pyz"
    return (
        f"{archive} was built for {want[0]} {want[1]} but this is {have[0]} {have[1]} "
        f"({sys.executable}): use {fits} (bash scripts/build_pyz.sh "
        f"--python python{sys.version_info.major}.{sys.version_info.minor}) "
        f"or run this file with a {want[0]} python"
    )


def root_problem(root: Path) -> str | None:
    """Why shiv cannot unpack under ``root``, or None once it exists and is writable."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    else:
        if os.access(root, os.W_OK | os.X_OK):
            return None
        reason = "not writable"
    return (
        f"cannot unpack into {root} ({reason}): set SHIV_ROOT to a writable directory "
        "(the systemd unit sets CacheDirectory=fastfeed and Environment=SHIV_ROOT=%C/fastfeed)"
    )


def _lock_path(root: Path, base: str) -> Path:
    return root / f".{base}_lock"


def hold(root: Path, base: str) -> int | None:
    """Take a shared lock on unpacking ``base`` for this process's life, so no prune removes it.

    Returns the locked descriptor, or None when ``root/base`` is missing (unpack, then retry).
    """
    path = _lock_path(root, base)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a prune or an unpacking holds it
    # A prune that held it may have deleted the file and the unpacking: the lock we got is then
    # on a dead inode, and the unpacking must be made again.
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino and (root / base).is_dir()
    except FileNotFoundError:
        same = False
    if same:
        return fd
    os.close(fd)
    return None


def prune(root: Path, keep: str) -> list[str]:
    """Delete the unpackings of other fastfeed builds that no running process holds.

    Returns the names removed. A build in use (its lock held shared by a running fastfeed, or
    exclusively by shiv while it unpacks) is skipped; the next start that finds it free prunes
    it. The idea is shiv's documented preamble clean-up (linkedin/shiv#88), made safe for
    processes still running an older build.
    """
    removed = []
    for entry in sorted(root.iterdir()):
        match = _UNPACKED.fullmatch(entry.name)
        if match is None or match["base"] == keep or not entry.is_dir():
            continue
        base = match["base"]
        lock = _lock_path(root, base)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry, ignore_errors=True)
            # The lock goes last, while still held: a start waiting on it then sees a dead
            # inode (hold() checks) and unpacks afresh.
            if not any((root / name).exists() for name in (base, f"{base}.tmp")):
                lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
        removed.append(entry.name)
    return removed


def _fail(problem: str) -> None:
    print(f"fastfeed: {problem}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def main() -> None:
    """Run the archive: check, unpack (shiv), hold and prune, then shiv runs fastfeed.cli:main."""
    import _bootstrap  # shiv's runtime, at the archive's root
    from _bootstrap.environment import Environment

    with _bootstrap.current_zipfile() as archive:
        build: dict[str, Any] = {}
        exec(archive.read("site-packages/fastfeed/_build_info.py"), build)
        problem = interpreter_problem(build, Path(archive.filename).name)
        if problem is not None:
            _fail(problem)
        env = Environment.from_json(archive.read("environment.json").decode())
        target = _bootstrap.cache_path(archive, env.root, env.build_id)
        root_missing = root_problem(target.parent)
        if root_missing is not None and not (target / "site-packages").is_dir():
            _fail(root_missing)
        held = None
        force = env.force_extract
        while root_missing is None and held is None:
            if force or not (target / "site-packages").is_dir():
                _bootstrap.extract_site_packages(
                    archive, target, env.compile_pyc, env.compile_workers, force
                )
            held = hold(target.parent, target.name)
            force = False
        # Unpacked here already: shiv's own forced unpacking would wait on our lock forever.
        os.environ.pop(Environment.FORCE_EXTRACT, None)
    if held is not None:
        prune(target.parent, keep=target.name)
    # shiv's bootstrap finds the unpacking in place, puts it on sys.path and calls the entry
    # point; the held descriptor stays open (and locked) until the process exits.
    _bootstrap.bootstrap()


if __name__ == "__main__":
    main()
