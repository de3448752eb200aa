"""Run SQLAlchemy's dialect compliance suite (``sqlalchemy.testing.suite``) on a fresh database.

Usage: ``python compliance/run.py [--baseline FILE] [--installed] [--keep-db] DIALECT [pytest
args...]`` with DIALECT ``agentdb`` or ``asyncpg`` (``compliance/run.sh`` wraps it).

The server: ``$COMPLIANCE_ADMIN_DSN`` (a superuser DSN), else PostgreSQL on 127.0.0.1:5432
letting user postgres in without a password, else a throwaway cluster removed at the end.
On it: role scott/tiger, and a database made afresh for the run (``$COMPLIANCE_DBNAME``,
default ``sqla_compliance_<dialect>``, so both dialects can run at once) with the schemas
test_schema and test_schema_2 and the extensions hstore, citext and btree_gist.

``--installed`` runs the installed agentdb (the venv's ``pytest`` script: the checkout's
``agentdb/`` is not on ``sys.path``); otherwise the checkout's (an in-place build).
``--baseline FILE``: exit 1 only when failed + errors exceed the number in FILE (and when
pytest did not run to the end); otherwise pytest's exit status is returned.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# pytest's last line: "12 failed, 1700 passed, 58 skipped in 61.2s" (within "=" in verbose runs)
SUMMARY = re.compile(r"^=*\s*((?:\d+ \w+|no tests ran).* in [\d.]+s\b.*?)\s*=*$")


def run_streaming(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> tuple[int, str]:
    """Run pytest, copying its output through (each line also to ``on_line``); its exit
    status and its summary line."""
    summary = ""
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if on_line is not None:
                on_line(line)
            m = SUMMARY.match(line.strip())
            if m:
                summary = m.group(1)
        rc = proc.wait()
    return rc, summary


def counts(summary: str) -> dict[str, int]:
    found = {k: 0 for k in ("passed", "failed", "errors", "skipped")}
    for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary):
        found["errors" if word.startswith("error") else word] = int(n)
    return found


def sqlalchemy_pytest_options(url: str, timeout: int) -> list[str]:
    """The pytest options of a run of SQLAlchemy's test plugin on ``url``: pytest-asyncio
    and the cache off (SQLAlchemy runs its own loop), no project ``addopts``, a per-test
    timeout, quiet with a line per failure and error."""
    return [
        "--dburi",
        url,
        "-p",
        "no:asyncio",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-o",
        f"timeout={timeout}",
        "-q",
        "-rfE",
    ]


@contextlib.contextmanager
def fresh_database(dbname: str, keep_db: bool = False, label: str = "compliance") -> Iterator[str]:
    """The server (``$COMPLIANCE_ADMIN_DSN``, else 127.0.0.1:5432, else a throwaway
    cluster) with role scott/tiger and database ``dbname`` made afresh (schemas test_schema
    and test_schema_2, hstore, citext, btree_gist); yields ``host:port``. The database is dropped
    afterwards unless ``keep_db``; a throwaway cluster is removed."""
    from agentdb.testing.cluster import TempCluster, admin_sql, dsn_with_dbname, local_server_dsn

    if not re.fullmatch(r"[a-z_][a-z0-9_]*", dbname):
        raise ValueError(f"database name {dbname!r} must be a plain identifier")
    cluster = None
    admin = os.environ.get("COMPLIANCE_ADMIN_DSN") or local_server_dsn()
    if admin is None:
        cluster = TempCluster({"max_prepared_transactions": 10}).start()
        admin = cluster.dsn()
        print(f"{label}: throwaway cluster at {admin}", flush=True)
    try:
        admin_sql(
            admin,
            "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='scott') "
            "THEN CREATE ROLE scott LOGIN PASSWORD 'tiger' SUPERUSER; END IF; END$$;",
        )
        admin_sql(admin, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        admin_sql(admin, f"CREATE DATABASE {dbname} OWNER scott")
        admin_sql(
            dsn_with_dbname(admin, dbname),
            "CREATE SCHEMA test_schema AUTHORIZATION scott; "
            "CREATE SCHEMA test_schema_2 AUTHORIZATION scott; "
            "CREATE EXTENSION IF NOT EXISTS hstore; CREATE EXTENSION IF NOT EXISTS citext; "
            # SQLAlchemy's own reflection tests of exclusion constraints need it
            "CREATE EXTENSION IF NOT EXISTS btree_gist;",
        )
        parts = urlsplit(admin) if "://" in admin else None
        host = (parts.hostname if parts else None) or "127.0.0.1"
        port = (parts.port if parts else None) or 5432
        yield f"{host}:{port}"
    finally:
        if not keep_db:
            try:
                admin_sql(admin, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            except Exception:
                pass
        if cluster is not None:
            cluster.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dialect", choices=["agentdb", "asyncpg"])
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--installed", action="store_true")
    parser.add_argument("--keep-db", action="store_true")
    args, pytest_args = parser.parse_known_args()

    dbname = os.environ.get("COMPLIANCE_DBNAME", f"sqla_compliance_{args.dialect}")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", dbname):
        parser.error(f"database name {dbname!r} must be a plain identifier")
    with fresh_database(dbname, args.keep_db) as server:
        url = f"postgresql+{args.dialect}://scott:tiger@{server}/{dbname}"
        if args.installed:
            runner = [str(Path(sys.executable).parent / "pytest")]
        else:
            runner = [sys.executable, "-m", "pytest"]
        cmd = [
            *runner,
            "compliance/test_suite.py",
            *sqlalchemy_pytest_options(url, timeout=60),
            "-o",
            "filterwarnings=",
            *pytest_args,
        ]
        print(f"compliance: {args.dialect} on {server}/{dbname}", flush=True)
        started = time.monotonic()
        rc, summary = run_streaming(cmd, ROOT)
        elapsed = time.monotonic() - started

    c = counts(summary)
    print(
        f"compliance {args.dialect}: passed {c['passed']} failed {c['failed']} "
        f"errors {c['errors']} skipped {c['skipped']} ({elapsed:.0f} s, pytest exit {rc})"
    )
    if args.baseline is None:
        return rc
    if rc not in (0, 1) or not summary:
        print(f"compliance: pytest did not complete (exit {rc})", file=sys.stderr)
        return 1
    baseline = int(args.baseline.read_text().split()[0])
    bad = c["failed"] + c["errors"]
    if bad > baseline:
        print(
            f"compliance: {bad} failed + errors, more than the baseline {baseline} "
            f"({args.baseline}): a regression",
            file=sys.stderr,
        )
        return 1
    if bad < baseline:
        print(f"compliance: {bad} failed + errors, below the baseline {baseline}: lower it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
