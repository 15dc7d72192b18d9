#!/usr/bin/env bash
# The whole benchmark: micro benches, journal and disk, load runs on loopback, recovery; then
# docs/benchmarks.md's result tables and docs/benchmarks-latency.png are regenerated from
# bench/results/*.json. `--quick` (development): short windows, 64 MiB recovery journal.
# The full run takes about 15 minutes on 2 cores; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=()
MAX_TIME=2
COMMAND="bash bench/run.sh"
if [ "${1:-}" = "--quick" ]; then
    QUICK=(--quick)
    MAX_TIME=0.5
    COMMAND="bash bench/run.sh --quick"
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "setuptools>=77" -e '.[bench]'
.venv/bin/python setup.py -q build_ext --inplace
.venv/bin/python -m bench.buildcheck  # refuses a debug or pure-Python build, saying which
mkdir -p bench/results
.venv/bin/python -m pytest -q bench/test_micro.py --benchmark-max-time "$MAX_TIME" \
    --benchmark-json bench/results/micro.json
.venv/bin/python -m bench.journal_load "${QUICK[@]}"
.venv/bin/python -m bench.load "${QUICK[@]}"
.venv/bin/python -m bench.recovery "${QUICK[@]}"
# The hot path (issue 11): pre-framed sender, every client in one interleaved run; the sink's
# CPU per frame alone; the applier's journal poll, derive and SQLite rates alone.
.venv/bin/python -m bench.hotpath "${QUICK[@]}"
.venv/bin/python -m bench.sink_micro > bench/results/sink_micro.json
.venv/bin/python -m bench.apply > bench/results/apply.json
# Binance (issue 12): one connection's sink against its Python path, CPU per frame.
.venv/bin/python -m bench.binance_link binance okx bybit coinbase > bench/results/binance_link.json
.venv/bin/python -m bench.report --command "$COMMAND"
echo "bench: results in bench/results/, tables in docs/benchmarks.md"
