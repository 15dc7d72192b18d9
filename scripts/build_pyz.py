"""The half of scripts/build_pyz.sh that runs in the target interpreter's build venv.

Installs fastfeed (compiling its extensions against this interpreter's headers) and this
interpreter's wheels of its dependencies into a staging site-packages, writes
fastfeed/_build_info.py, packs the staging directory with shiv and makes fastfeed/_boot.py the
archive's ``__main__.py``. Prints the path of the file it wrote.

Reproducible (same commit, same interpreter => same bytes): the build works on a fresh copy of
the sources at a path the compiler is told to forget, install-time records that name the build
path are dropped, file modes are normalised, and shiv's --reproducible sorts entries and dates
them from SOURCE_DATE_EPOCH, which build_pyz.sh sets to the commit's time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fastfeed import __version__  # noqa: E402  (the source tree, after the path above)
from fastfeed._boot import platform_tag, python_tag  # noqa: E402

# What `pip install .` reads; everything else (tests, docs, build output) stays out.
SOURCES = ("fastfeed", "build_backend", "setup.py", "pyproject.toml", "README.md", "MANIFEST.in")
# Generated or local files inside fastfeed/ that a fresh build makes again.
LEFT_OUT = ("__pycache__", "*.so", "*.c", "*.html", "_build_info.py")
# Written by pip at install time (the build path, pip's own bookkeeping); a zipapp needs none.
INSTALL_RECORDS = ("direct_url.json", "INSTALLER", "REQUESTED", "RECORD")


def commit() -> str:
    """The commit built, ``-dirty`` when tracked files differ from it, ``unknown`` outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def stage(work: Path) -> Path:
    """Install fastfeed and its dependencies into ``work/site-packages``; return that path."""
    src, site = work / "src", work / "site-packages"
    for old in (src, site):
        shutil.rmtree(old, ignore_errors=True)
    src.mkdir(parents=True)
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(*LEFT_OUT))
        elif path.exists():
            shutil.copy2(path, src / name)
    env = dict(os.environ)
    # -g is in CPython's CFLAGS: keep debug info, but name sources relative to the copy.
    env["CFLAGS"] = f"{env.get('CFLAGS', '')} -ffile-prefix-map={src}=.".strip()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-build-isolation",
            "--no-compile",
            "--target",
            str(site),
            str(src),
        ],
        env=env,
        check=True,
    )
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts: their shebang is a path
    for record in INSTALL_RECORDS:
        for path in site.glob(f"*.dist-info/{record}"):
            path.unlink()
    for path in site.rglob("*"):
        if path.is_file():
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)
    return site


def build_info(site: Path) -> None:
    """Write what ``fastfeed --version`` and the start-up check read."""
    epoch = int(os.environ["SOURCE_DATE_EPOCH"])
    fields = {
        "VERSION": __version__,
        "COMMIT": commit(),
        "PYTHON_TAG": python_tag(),
        "PLATFORM": platform_tag(),
        "BUILT": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
    }
    lines = ['"""Written by scripts/build_pyz.sh: what this build is and what it fits."""', ""]
    lines += [f"{key} = {value!r}" for key, value in fields.items()]
    (site / "fastfeed" / "_build_info.py").write_text("\n".join(lines) + "\n")


def pack(site: Path, out: Path) -> None:
    """shiv the staging directory, then swap shiv's ``__main__.py`` for fastfeed/_boot.py."""
    shebang = f"/usr/bin/env python{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory() as tmp:
        shived = Path(tmp) / out.name
        subprocess.run(
            [
                sys.executable,
                "-m",
                "shiv",
                "--reproducible",
                "--compressed",
                "-p",
                shebang,
                "-e",
                "fastfeed.cli:main",
                "--site-packages",
                str(site),
                "-o",
                str(shived),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        boot = (site / "fastfeed" / "_boot.py").read_bytes()
        partial = out.with_name(out.name + ".part")
        with shived.open("rb") as raw, partial.open("wb") as dest:
            dest.write(raw.readline())  # the shebang line
            raw.seek(0)
            with zipfile.ZipFile(raw) as old, zipfile.ZipFile(dest, "w") as new:
                for info in old.infolist():
                    data = boot if info.filename == "__main__.py" else old.read(info)
                    new.writestr(info, data)
        partial.chmod(0o755)
        partial.replace(out)


def main() -> None:
    """Build one zipapp for this interpreter into ``--out-dir``; print its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    work = REPO / "build" / "pyz" / python_tag()
    site = stage(work)
    build_info(site)
    out = args.out_dir / f"fastfeed-{__version__}-{python_tag()}-{platform_tag()}.pyz"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    pack(site, out)
    print(out)


if __name__ == "__main__":
    main()
