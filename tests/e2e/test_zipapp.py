"""The one-file app as shipped: the README's command, reproducible builds, other Pythons, and a
service user without a home (the systemd unit's situation)."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastfeed import __version__
from fastfeed._boot import platform_tag, python_tag
from fastfeed.sim.content import StreamGenerator

from .harness import REPO, Recorder, export, status, stream_keys

__all__: list[str] = []

CHANNELS = {"depth": ["AAPL.US", "TSLA.US"], "trade": ["BTC.CC"]}
BUILD_TIMEOUT_S = 600.0
NOBODY = 65534
# This interpreter itself, not its venv: the zipapp must bring every dependency along.
PYTHON = str(Path(sys.executable).resolve())


def copy_worktree(dest: Path) -> None:
    """Copy the files git would ship (tracked or new, not ignored) and commit them in ``dest``.

    The build then writes dist/ in the copy, never under another test's feet in the repo, and
    has a commit to name. The copy has no .venv: build_pyz.sh makes its own, as on a fresh
    machine, so a build requirement only the test venv has fails here as it would for a user.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    who = ["-c", "user.name=fastfeed-test", "-c", "user.email=test@localhost"]
    for args in (["init", "-q"], ["add", "-A"], [*who, "commit", "-q", "-m", "tree under test"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)


def build(tree: Path) -> Path:
    """``bash scripts/build_pyz.sh`` in ``tree`` with PYTHON as python3; returns dist/fastfeed.pyz.

    Nothing of the test venv reaches the build: its venv is ``tree``'s .venv.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        ["bash", "scripts/build_pyz.sh"],
        cwd=tree,
        env={**env, "PYTHON": PYTHON},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tree / "dist" / "fastfeed.pyz"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of the worktree with dist/fastfeed.pyz built in it (once per module)."""
    tree = tmp_path_factory.mktemp("zipapp") / "tree"
    copy_worktree(tree)
    build(tree)
    return tree


def pyz_run(
    pyz: Path, env: dict[str, str], *args: str, python: str = PYTHON
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(pyz), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def assert_one_line_refusal(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def assert_contiguous_sim_bytes(rows: list[dict[str, Any]], channel: str, symbol: str) -> None:
    """Seqs run without a hole from the first recorded, each frame the simulator's bytes."""
    first = rows[0]["seq"]
    assert [r["seq"] for r in rows] == list(range(first, first + len(rows)))
    gen = StreamGenerator(1, channel, symbol)
    for _ in range(first - 1):
        gen.next()
    assert all(row["frame"].encode() == gen.next() for row in rows)


def head_commit(tree: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True, check=True
    ).stdout.strip()


def readme_run(python: str, pyz: Path, data_dir: Path) -> list[str]:
    """The README's first command (no command word, ``--venue sim``) into ``data_dir``."""
    channels = [f"--channels={ch}:{','.join(syms)}" for ch, syms in CHANNELS.items()]
    return [python, str(pyz), "--venue", "sim", *channels, "--data-dir", str(data_dir)]


def all_streams_recorded(data_dir: Path) -> bool:
    return {(s["channel"], s["symbol"]) for s in status(data_dir)["streams"]} == stream_keys(
        CHANNELS
    )


@pytest.mark.slow
def test_built_zipapp_records_from_the_builtin_simulator_and_stops_on_sigint(
    tree: Path, tmp_path: Path, data_dir: Path
) -> None:
    pyz = tree / "dist" / "fastfeed.pyz"
    env = {**os.environ, "SHIV_ROOT": str(tmp_path / "shiv")}
    env.pop("TICKDB_API_KEY", None)  # --venue sim needs none
    version = pyz_run(pyz, env, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(
        f"fastfeed {__version__} (commit {head_commit(tree)}, {python_tag()} {platform_tag()}, "
        "built 20"
    )
    named = tree / "dist" / f"fastfeed-{__version__}-{python_tag()}-{platform_tag()}.pyz"
    assert named.read_bytes() == pyz.read_bytes()

    with Recorder(tmp_path, data_dir, "", CHANNELS, key=None) as rec:
        rec.args = readme_run(PYTHON, pyz, data_dir)  # the default log format
        rec.env = env
        rec.start()
        rec.until(lambda: all_streams_recorded(data_dir), "all three streams recorded")
        assert rec.stop(signal.SIGINT) == 0
    shown = pyz_run(pyz, env, "status", "--data-dir", str(data_dir), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    streams = orjson.loads(shown.stdout)["streams"]
    assert {(s["venue"], s["channel"], s["symbol"]) for s in streams} == {
        ("sim", channel, symbol) for channel, symbol in stream_keys(CHANNELS)
    }
    assert all(s["records"] > 0 and s["gaps_open"] == 0 for s in streams)
    for (channel, symbol), rows in export(data_dir).items():
        assert_contiguous_sim_bytes(rows, channel, symbol)


@pytest.mark.slow
def test_a_server_python_without_home_records_and_reports_no_gap(
    tree: Path, tmp_path: Path, data_dir: Path
) -> None:
    """The README's build run as a server runs it: another installation of this Python, which
    has none of fastfeed's dependencies, with HOME unset and the unpacking under SHIV_ROOT."""
    python = server_python()
    if python is None:
        pytest.skip(
            f"no installation of python{sys.version_info[0]}.{sys.version_info[1]} other than "
            f"the build's ({sys.base_prefix}) without picows: only the build's Python ran it"
        )
    pyz = tree / "dist" / "fastfeed.pyz"
    env = {"PATH": "/usr/bin:/bin", "SHIV_ROOT": str(tmp_path / "shiv")}
    with Recorder(tmp_path, data_dir, "", CHANNELS, key=None) as rec:
        rec.args = readme_run(python, pyz, data_dir)
        rec.env = env
        rec.start()
        rec.until(lambda: all_streams_recorded(data_dir), f"all three streams recorded by {python}")
        assert rec.stop(signal.SIGINT) == 0
    shown = pyz_run(
        pyz, env, "status", "--data-dir", str(data_dir), "--format", "json", python=python
    )
    assert shown.returncode == 0, shown.stderr
    streams = orjson.loads(shown.stdout)["streams"]
    assert {(s["channel"], s["symbol"]) for s in streams} == stream_keys(CHANNELS)
    assert all(s["records"] > 0 and s["gaps_open"] == 0 for s in streams)


@pytest.mark.slow
def test_a_second_build_of_the_commit_elsewhere_is_byte_identical(
    tree: Path, tmp_path: Path
) -> None:
    again = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(tree), str(again)], check=True)
    (again / ".venv").symlink_to(tree / ".venv")  # the same interpreter and build requirements
    first, second = (tree / "dist" / "fastfeed.pyz").read_bytes(), build(again).read_bytes()
    assert hashlib.sha256(second).hexdigest() == hashlib.sha256(first).hexdigest()


def interpreters() -> Iterator[tuple[str, str, str, bool]]:
    """Each CPython 3.11+ on PATH, in /usr/bin or installed beside this one (pyenv).

    Yields (its executable, "3.X", its installation's prefix, whether it imports picows alone).
    """
    names = [f"python3.{minor}" for minor in (11, 12, 13)]
    beside = sorted(glob.glob(str(Path(sys.base_prefix).parent / "3.*" / "bin" / "python3.*[0-9]")))
    probe = (
        "import importlib.util, sys; print(sys.executable); print('%d.%d' % sys.version_info[:2]);"
        "print(importlib.util.find_spec('picows') is not None); print(sys.base_prefix)"
    )
    for cand in [*names, *(f"/usr/bin/{name}" for name in names), *beside]:
        try:
            got = subprocess.run(
                [cand, "-c", probe], capture_output=True, text=True, timeout=30, check=False
            )
        except OSError:
            continue
        if got.returncode == 0:
            executable, version, picows, prefix = got.stdout.splitlines()
            yield executable, version, prefix, picows == "True"


def other_python() -> str | None:
    """A CPython of another minor version."""
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return next((exe for exe, version, _, _ in interpreters() if version != mine), None)


def server_python() -> str | None:
    """Another installation of this CPython minor version, without fastfeed's dependencies.

    A server's ``python3``: the archive fits it, and nothing it lacks can come from the build's
    interpreter or venv.
    """
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    built_by = Path(sys.base_prefix).resolve()
    for exe, version, prefix, has_picows in interpreters():
        if version == mine and Path(prefix).resolve() != built_by and not has_picows:
            return exe
    return None


@pytest.mark.slow
def test_another_python_is_refused_in_one_line_naming_the_file_to_use(
    tree: Path, tmp_path: Path
) -> None:
    python = other_python()
    if python is None:
        pytest.skip("no CPython of another minor version is installed")
    env = {**os.environ, "SHIV_ROOT": str(tmp_path / "shiv")}
    line = assert_one_line_refusal(
        pyz_run(tree / "dist" / "fastfeed.pyz", env, "--version", python=python),
        f"built for {python_tag()} {platform_tag()}",
        "use fastfeed-",
    )
    assert "--python python3." in line
    assert not (tmp_path / "shiv").exists()  # refused before unpacking anything


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory the unprivileged user owns, outside pytest's root-only tmp tree."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running as another user needs root and setpriv")
    with tempfile.TemporaryDirectory(prefix="fastfeed-nobody-") as name:
        base = Path(name)
        base.chmod(0o755)
        os.chown(base, NOBODY, NOBODY)
        yield base


def copy_for_nobody(tree: Path, nobody_dir: Path) -> Path:
    """dist/fastfeed.pyz, readable by anyone (this process's umask may be fastfeed's 077)."""
    pyz = nobody_dir / "fastfeed.pyz"
    shutil.copy(tree / "dist" / "fastfeed.pyz", pyz)
    pyz.chmod(0o755)
    return pyz


def as_nobody(*args: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *args]


@pytest.mark.slow
def test_a_user_without_a_home_is_told_to_set_shiv_root(tree: Path, nobody_dir: Path) -> None:
    pyz = copy_for_nobody(tree, nobody_dir)
    read_only_home = nobody_dir / "home"  # root's, so not writable by the service user
    read_only_home.mkdir(mode=0o755)
    read_only_home.chmod(0o755)  # readable, whatever this process's umask
    os.chown(nobody_dir, 0, 0)
    for home in ("/nonexistent", str(read_only_home)):
        proc = subprocess.run(
            as_nobody(PYTHON, str(pyz), "--version"),
            env={"PATH": "/usr/bin:/bin", "HOME": home},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert_one_line_refusal(proc, f"cannot unpack into {home}/.shiv", "set SHIV_ROOT")


@pytest.mark.slow
def test_the_service_user_records_from_the_simulator_and_stops_on_sigterm(
    tree: Path, nobody_dir: Path, tmp_path: Path
) -> None:
    pyz = copy_for_nobody(tree, nobody_dir)
    cache, data_dir = nobody_dir / "cache", nobody_dir / "data"
    # An unpacking of an earlier build, as a deployment leaves it behind: pruned at start.
    stale = cache / f"fastfeed-0.0.9-{python_tag()}-{platform_tag()}.pyz_{'0' * 64}"
    (stale / "site-packages").mkdir(parents=True)
    for path in (cache, stale, stale / "site-packages"):
        os.chown(path, NOBODY, NOBODY)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "SHIV_ROOT": str(cache)}
    with Recorder(tmp_path, data_dir, "", CHANNELS, key=None) as rec:
        rec.args = as_nobody(*readme_run(PYTHON, pyz, data_dir))
        rec.env = env
        rec.start()
        rec.until(
            lambda: all_streams_recorded(data_dir), "all three streams recorded by the service user"
        )
        assert not stale.exists()
        assert rec.stop(signal.SIGTERM) == 0
    assert data_dir.stat().st_uid == NOBODY
    unpacked = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert [p.name.split("_")[0] for p in unpacked] == ["fastfeed.pyz"]
    assert unpacked[0].stat().st_uid == NOBODY
    assert all(s["records"] > 0 and s["gaps_open"] == 0 for s in status(data_dir)["streams"])


@pytest.mark.slow
def test_the_sdist_builds_a_wheel_with_the_journal_in_a_venv_without_cython(
    tree: Path, tmp_path: Path
) -> None:
    out, venv = tmp_path / "dist", tmp_path / "venv"
    quiet = {"capture_output": True, "text": True, "timeout": BUILD_TIMEOUT_S}
    made = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(out), str(tree)],
        **quiet,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    (sdist,) = out.glob("fastfeed-*.tar.gz")
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q"]
    for step in (
        [*pip, "install", "setuptools>=77"],  # and nothing else: no Cython, no wheel package
        [*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", str(out), str(sdist)],
    ):
        done = subprocess.run(step, **quiet)
        assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("fastfeed-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    assert any(n.startswith("fastfeed/journal/_wal.cpython-") for n in names)
    assert not any(n.endswith(".c") for n in names)
    installed = subprocess.run([*pip, "install", str(wheel)], **quiet)
    assert installed.returncode == 0, installed.stderr[-3000:]
    py = str(venv / "bin" / "python")
    probe = (
        "import importlib.util, fastfeed.journal._wal as w;"
        "print(importlib.util.find_spec('Cython'), w.__file__)"
    )
    shown = subprocess.run([py, "-c", probe], **quiet)
    assert shown.stdout.startswith("None ") and ".so" in shown.stdout, shown.stderr
    version = subprocess.run([str(venv / "bin" / "fastfeed"), "--version"], **quiet)
    assert version.stdout.strip() == f"fastfeed {__version__} (from source: no build info)"
