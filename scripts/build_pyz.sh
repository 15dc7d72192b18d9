#!/usr/bin/env bash
# Build the one-file app: fastfeed (with its compiled journal) and its runtime dependencies,
# run with `python3.X FILE.pyz ...`. Compiled code only fits the CPython that built it, so each
# file is named for what it fits: dist/fastfeed-<version>-cp312-linux_x86_64.pyz. The build for
# the local python3 is also copied to dist/fastfeed.pyz.
#
#   bash scripts/build_pyz.sh                     # the local python3 (or $PYTHON)
#   bash scripts/build_pyz.sh --python python3.12 # another interpreter (repeatable)
#   bash scripts/build_pyz.sh --all               # every CPython 3.11, 3.12, 3.13 found
#
# Each interpreter builds in a venv of its own (the local python3 in .venv, others in
# build/pyz/venv-3.X), so the journal compiles against its headers and pip takes its wheels.
# Reproducible: SOURCE_DATE_EPOCH (default: the last commit's time) dates every entry.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCAL=${PYTHON:-python3}
PYTHONS=()
ALL=0
usage() {
    echo "usage: bash scripts/build_pyz.sh [--python PYTHON]... [--all]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --python) [ $# -ge 2 ] || usage; PYTHONS+=("$2"); shift 2 ;;
        --python=*) PYTHONS+=("${1#--python=}"); shift ;;
        --all) ALL=1; shift ;;
        *) usage ;;
    esac
done

version_of() {  # "3.12" for an interpreter that runs, nothing otherwise
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

find_python() {  # a working interpreter named $1 (python3.X): on PATH, else a pyenv build of 3.X
    local name=$1 cand
    local want=${name#python}
    local pyenv_root
    pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for cand in "$name" $(ls -d "$pyenv_root"/versions/"$want".*/bin/"$name" 2>/dev/null | sort -rV); do
        if [ "$(version_of "$cand")" = "$want" ]; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

if [ "$ALL" = 1 ]; then
    for minor in 11 12 13; do
        if found=$(find_python "python3.$minor"); then
            PYTHONS+=("$found")
        else
            echo "build_pyz: no python3.$minor found: skipping it" >&2
        fi
    done
fi
[ ${#PYTHONS[@]} -gt 0 ] || PYTHONS=("$LOCAL")

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800)
    export SOURCE_DATE_EPOCH
fi
LOCAL_VERSION=$(version_of "$LOCAL")
mkdir -p dist
for py in "${PYTHONS[@]}"; do
    ver=$(version_of "$py")
    if [ -z "$ver" ] && [[ "$py" == python3.* ]] && found=$(find_python "$py"); then
        py=$found  # a pyenv shim that is not switched on: use the build behind it
        ver=$(version_of "$py")
    fi
    if [ -z "$ver" ]; then
        echo "build_pyz: cannot run $py: name an interpreter that runs (e.g. --python /usr/bin/python3.12)" >&2
        exit 2
    fi
    if [ "$ver" = "$LOCAL_VERSION" ]; then venv=.venv; else venv=build/pyz/venv-$ver; fi
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    # build_pyz.py builds without isolation in this venv, so it needs the build requirements
    # pyproject.toml names (setuptools; picows, whose declarations the frame sink cimports),
    # plus Cython for the extensions and shiv for the archive.
    mapfile -t requires < <("$venv/bin/python" -c 'import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
    "$venv/bin/python" -m pip install -q "${requires[@]}" "cython>=3.0" shiv
    out=$("$venv/bin/python" scripts/build_pyz.py --out-dir dist)
    if [ "$ver" = "$LOCAL_VERSION" ]; then
        cp -p "$out" dist/fastfeed.pyz
        echo "built dist/fastfeed.pyz = $out ($(du -h "$out" | cut -f1)) for $py"
    else
        echo "built $out ($(du -h "$out" | cut -f1)) for $py"
    fi
done
