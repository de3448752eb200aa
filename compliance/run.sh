#!/usr/bin/env bash
# SQLAlchemy's dialect compliance suite (sqlalchemy.testing.suite) on a fresh database.
# Usage: compliance/run.sh [agentdb|asyncpg] [--baseline FILE] [--installed] [pytest args...]
# The server, the database and the options: see compliance/run.py. Not part of `pytest tests`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-${VPY:-python}}"
DB="${1:-agentdb}"; shift || true
installed=0
for a in "$@"; do [ "$a" = "--installed" ] && installed=1; done
if [ "$installed" = 0 ]; then
    export PYTHONPATH="${PYTHONPATH:-$PWD}"  # the checkout's agentdb (an in-place build)
fi
exec "$PY" compliance/run.py "$DB" "$@"
