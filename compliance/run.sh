#!/usr/bin/env bash
# SQLAlchemy's dialect compliance suite (sqlalchemy.testing.suite) against a PostgreSQL.
# Usage: compliance/run.sh [agentdb|asyncpg] [pytest args...]
# Needs: role scott/tiger, database test with schemas test_schema and test_schema_2
# (created here through psql as user postgres when missing). Not part of `pytest tests`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-${VPY:-python}}"
DB="${1:-agentdb}"; shift || true
PGHOST="${PGHOST:-127.0.0.1}"
psql_admin() { psql -h "$PGHOST" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
psql_admin -d postgres -c "DO \$\$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='scott')
  THEN CREATE ROLE scott LOGIN PASSWORD 'tiger' SUPERUSER; END IF; END\$\$;"
psql_admin -d postgres -tc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
  || psql_admin -d postgres -c "CREATE DATABASE test OWNER scott"
psql_admin -d test -c "CREATE SCHEMA IF NOT EXISTS test_schema AUTHORIZATION scott;
  CREATE SCHEMA IF NOT EXISTS test_schema_2 AUTHORIZATION scott;
  CREATE EXTENSION IF NOT EXISTS hstore; CREATE EXTENSION IF NOT EXISTS citext;"
export PYTHONPATH="${PYTHONPATH:-$PWD}"
exec "$PY" -m pytest compliance/test_suite.py --db "$DB" -p no:asyncio -p no:cacheprovider \
  -o filterwarnings= -o addopts= -o timeout=60 -q -rfE "$@"
