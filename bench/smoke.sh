#!/bin/sh
# CI smoke of the benchmark harness: every workload once, tiny durations (< 60 s).
# Speed is never asserted; the exit status is non-zero only when a case errors.
# Usage: bench/smoke.sh [extra python -m bench options]   (BENCH_DSN, PYTHON override)
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -m bench --quick --json bench/results/quick.json "$@"
