#!/usr/bin/env bash
# Profile the recorder's hot path: the real Recorder (bench/probe.py) recording 10 depth streams
# from a simulator in burst mode, sampled by py-spy for 15 s. Writes bench/results/profile.svg
# (a flame graph) and bench/results/profile.txt (the raw collapsed stacks).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8797}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
.venv/bin/python -m fastfeed sim --port "$PORT" --burst --depth-levels 3 >"$WORK/sim.log" 2>&1 &
SIM=$!
.venv/bin/python -c "import socket, time
for _ in range(500):
    try: socket.create_connection(('127.0.0.1', $PORT)).close(); break
    except OSError: time.sleep(0.01)"
SYMS=$(.venv/bin/python -c "print(','.join(f'S{i:03d}.US' for i in range(10)))")
.venv/bin/python -m bench.probe --endpoint "ws://127.0.0.1:$PORT/v1/realtime" \
    --channels "depth:$SYMS" --data-dir "$WORK/data" --duration 60 --out "$WORK/r.json" &
REC=$!
.venv/bin/py-spy record --pid "$REC" --duration 15 --rate 250 --nonblocking \
    --output bench/results/profile.svg
.venv/bin/py-spy record --pid "$REC" --duration 15 --rate 250 --nonblocking --format raw \
    --output bench/results/profile.txt
kill -TERM "$REC" && wait "$REC" || true
kill -TERM "$SIM" && wait "$SIM" || true
