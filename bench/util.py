"""Small shared helpers: psql for set-up SQL, DSN tweaks, starting sibling processes."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def find_pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def psql(dsn: str, sql: str) -> str:
    """Run SQL through the psql binary (independent of every driver under test)."""
    tool = find_pg_tool("psql")
    if tool is None:
        raise RuntimeError("psql not found (apt-get install postgresql-client)")
    proc = subprocess.run(
        [tool, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
    return proc.stdout


def with_dbname(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + dbname))


def dbname_of(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


def ensure_database(dsn: str) -> None:
    name = dbname_of(dsn)
    admin = with_dbname(dsn, "postgres")
    exists = psql(admin, f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip()
    if not exists:
        psql(admin, f'CREATE DATABASE "{name}"')


def sqlalchemy_url(dsn: str, driver: str) -> str:
    """postgresql://... -> postgresql+<driver>://..."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(scheme=f"postgresql+{driver}"))


def python_module_cmd(module: str, *args: str) -> list[str]:
    """A command running ``python -m <module>`` in a child that imports the same agentdb
    as this process (an installed one must not be shadowed by the checkout's unbuilt
    package directory, and an in-place build must be found), and ``bench`` from ROOT."""
    agentdb_path = ""
    try:
        import agentdb

        agentdb_path = str(Path(agentdb.__file__).resolve().parent.parent)
    except Exception:  # noqa: BLE001 - the child reports agentdb as unavailable itself
        pass
    boot = (
        "import sys, runpy; "
        f"sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
        f"sys.path.insert(0, {agentdb_path!r}) if {agentdb_path!r} else None; "
        f"sys.path.append({str(ROOT)!r}); "
        f"sys.argv[1:] = {list(args)!r}; "
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", boot]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env
