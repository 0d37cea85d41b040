#!/usr/bin/env bash
# Run every benchmark in sequence; each one's output is printed and kept in bench/results/<stamp>-<name>.txt.
# Usage: bash bench/run_all.sh [--server granian|uvicorn] [--duration SECONDS]
#   --server    ASGI server for the API (and the bare reference app); default granian
#   --duration  seconds of wrk load per endpoint in ingest_http.py; default 60
# Each script starts its own InfluxDB/MariaDB/API (ports 28086/23306/28082, state .state-bench/)
# and stops what it started, so nothing here collides with the tests or the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SERVER=granian
DURATION=60
while [ $# -gt 0 ]; do
  case "$1" in
    --server) SERVER=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    *) echo "usage: $0 [--server granian|uvicorn] [--duration SECONDS]" >&2; exit 2 ;;
  esac
done
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=bench/results
mkdir -p "$OUT"
status=0
run() {
  local name=$1; shift
  echo "=== $name: $* ==="
  if "$PY" "$@" 2>&1 | tee "$OUT/$STAMP-$name.txt"; then :; else status=1; echo "!!! $name failed" >&2; fi
  echo
}
run ingest_http bench/ingest_http.py --duration "$DURATION" --server "$SERVER"
run ingest_batch bench/ingest_batch.py --server "$SERVER"
run rollup bench/rollup.py
run history bench/history.py --server "$SERVER"
run terminal_to_rolled_up bench/terminal_to_rolled_up.py --server "$SERVER"
echo "outputs: $OUT/$STAMP-*.txt"
exit $status
