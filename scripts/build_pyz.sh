#!/usr/bin/env bash
# Build dist/fastfeed.pyz: one file holding fastfeed (with its compiled journal) and its
# runtime dependencies, run with `python dist/fastfeed.pyz ...`.
# Reproducible: SOURCE_DATE_EPOCH pins timestamps (from the last commit when in git), and
# shiv's --reproducible sorts entries and fixes the build id; --compressed deflates it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800)
    export SOURCE_DATE_EPOCH
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q shiv
mkdir -p dist
.venv/bin/shiv --reproducible --compressed \
    -p '/usr/bin/env python3' \
    -e fastfeed.cli:main \
    -o dist/fastfeed.pyz \
    . 
echo "built dist/fastfeed.pyz ($(du -h dist/fastfeed.pyz | cut -f1))"
