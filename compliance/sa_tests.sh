#!/usr/bin/env bash
# Test paths of SQLAlchemy's own test suite (default: test/ext/asyncio/test_cancellation.py)
# on postgresql+agentdb (or asyncpg, or both compared), from the sdist of the installed
# SQLAlchemy (downloaded once into ${AGENTDB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentdb}).
# Usage: compliance/sa_tests.sh [--dialect agentdb|asyncpg|both] [--installed] [--keep-db]
#        [--cache DIR] [--known FILE] [--failures-out FILE] [TEST_PATH ...] [-- PYTEST_ARGS ...]
# The wide comparison (README, compliance/RESULTS.md): compliance/sa_tests.sh --dialect both \
#   test/dialect/postgresql test/ext/asyncio test/sql test/orm
# The server, the database and the options: see compliance/sa_tests.py. Not part of `pytest tests`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-${VPY:-python}}"
installed=0
for a in "$@"; do
    [ "$a" = "--" ] && break
    [ "$a" = "--installed" ] && installed=1
done
if [ "$installed" = 0 ]; then
    export PYTHONPATH="${PYTHONPATH:-$PWD}"  # the checkout's agentdb (an in-place build)
fi
exec "$PY" compliance/sa_tests.py "$@"
