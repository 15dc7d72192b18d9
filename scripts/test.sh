#!/usr/bin/env bash
# The whole test suite, from a fresh machine with Python 3.11+, pip and a C compiler:
# makes .venv, installs fastfeed (building the Cython journal) with its dev extras,
# then runs ruff, mypy and pytest exactly as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=77"  # setup.py build_ext reads pyproject.toml: its SPDX license needs setuptools>=77
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/python -m pip install -q --require-hashes --no-deps -r requirements-test.txt  # nats-server
# Build the extension next to its source as well, so tests import the same code they read.
.venv/bin/python setup.py -q build_ext --inplace
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -X dev -m pytest -q "$@"
