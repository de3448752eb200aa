"""Ops layer: ``python -m agentdb``: a health check for containers, ``init-db`` for deployments.

``check``
    Connects with ``--url`` or ``DATABASE_URL`` (any ``postgres://``/``postgresql[+driver]://``
    URL), prints the server version, the round-trip latency, whether TLS is in use, the pool
    settings and the URL with its password hidden. Exit code 0 when the database answered,
    1 otherwise (a container ``HEALTHCHECK``); ``--json`` prints one JSON object instead.
``init-db module:metadata``
    ``create_db_and_tables`` from the command line: creates the database when missing, then
    every table of the named ``MetaData`` (``app.models:SQLModel.metadata``, or any object
    with a ``metadata`` attribute, such as a declarative base).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import dsn as _dsn
from . import settings as _settings

__all__ = ["main", "check", "load_metadata"]


def _pool_settings(s: _settings.Settings) -> dict[str, Any]:
    return {
        "pool_size": s.pool_size,
        "max_overflow": s.max_overflow,
        "pool_timeout": s.pool_timeout,
        "pool_recycle": s.pool_recycle,
        "pre_ping": s.pre_ping,
    }


async def check(url: str, timeout: float = 5.0, samples: int = 5) -> dict[str, Any]:
    """Connect to ``url`` and measure it; never raises (``result["ok"]`` says how it went).

    Keys: ``ok``, ``url`` (password hidden), ``server_version`` (``"15.8"``),
    ``server_version_num``, ``connect_ms``, ``latency_ms`` (median of ``samples`` round
    trips of ``SELECT 1``), ``tls``, ``pool`` (the settings the drop-in functions use),
    ``libpq_version``; or ``error`` and ``error_type`` when ``ok`` is false.
    """
    import agentdb

    s = _settings.get_settings()
    result: dict[str, Any] = {
        "ok": False,
        "url": _dsn.hide_password(url),
        "pool": _pool_settings(s),
        "libpq_version": agentdb.libpq_version(),
    }
    conn = None
    try:
        t0 = time.perf_counter()
        conn = await agentdb.connect(url, timeout=timeout)
        result["connect_ms"] = round((time.perf_counter() - t0) * 1000.0, 3)
        rtts = []
        for _ in range(max(1, samples)):
            t = time.perf_counter()
            await conn.fetchval("SELECT 1", timeout=timeout)
            rtts.append((time.perf_counter() - t) * 1000.0)
        result["latency_ms"] = round(statistics.median(rtts), 3)
        result["server_version"] = conn.get_parameter_status("server_version")
        result["server_version_num"] = conn._server_version_num()
        result["tls"] = conn.ssl_in_use()
        result["database"] = await conn.fetchval("SELECT current_database()", timeout=timeout)
        result["user"] = await conn.fetchval("SELECT current_user", timeout=timeout)
        result["ok"] = True
    except Exception as e:  # noqa: BLE001 - a health check reports, it never raises
        result["error_type"] = type(e).__name__
        result["error"] = _dsn.scrub_dsn(str(e) or type(e).__name__, url)
    finally:
        if conn is not None:
            try:
                await conn.close(timeout=timeout)
            except Exception:  # noqa: BLE001
                conn.terminate()
    return result


def _print_check(r: dict[str, Any]) -> None:
    status = "ok" if r["ok"] else "FAILED"
    print(f"agentdb check: {status}")
    print(f"  url:      {r['url']}")
    if r["ok"]:
        print(f"  server:   PostgreSQL {r['server_version']} ({r['server_version_num']})")
        print(f"  database: {r['database']} as {r['user']}")
        print(f"  connect:  {r['connect_ms']:.2f} ms")
        print(f"  latency:  {r['latency_ms']:.2f} ms (round trip, median)")
        print(f"  tls:      {'yes' if r['tls'] else 'no'}")
    else:
        print(f"  error:    {r['error_type']}: {r['error']}")
    pool = " ".join(f"{k}={v}" for k, v in r["pool"].items())
    print(f"  pool:     {pool}")
    print(f"  libpq:    {r['libpq_version']}")


def load_metadata(spec: str) -> Any:
    """``agentdb.database.load_metadata(spec)`` with the current directory importable, as
    uvicorn does: ``init-db app.models:SQLModel.metadata`` from the project's directory."""
    from .database import load_metadata as load

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    return load(spec)


async def _init_db(metadata: Any) -> list[str]:
    from .database import close_db_connection, create_db_and_tables

    try:
        await create_db_and_tables(metadata)
    finally:
        await close_db_connection()
    return sorted(metadata.tables)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m agentdb",
        description="a health check for containers and init-db for deployments",
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="connect and report (exit 0 when the database answers)")
    c.add_argument("--url", help="database URL (default: $DATABASE_URL)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    i = sub.add_parser("init-db", help="create the database and the tables of a MetaData")
    i.add_argument("metadata", help="module:attr, for example app.models:SQLModel.metadata")
    i.add_argument("--url", help="database URL (default: $DATABASE_URL)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    url = args.url or _settings.get_settings().database_url
    if args.command == "check":
        result = asyncio.run(check(url, timeout=args.timeout))
        if args.json:
            print(json.dumps(result, sort_keys=True))
        else:
            _print_check(result)
        return 0 if result["ok"] else 1
    # init-db
    try:
        metadata = load_metadata(args.metadata)
    except (ImportError, AttributeError, ValueError) as e:
        print(f"agentdb init-db: cannot load {args.metadata}: {e}", file=sys.stderr)
        return 1
    if args.url:
        _settings.configure(database_url=args.url)
    try:
        tables = asyncio.run(_init_db(metadata))
    except Exception as e:  # noqa: BLE001
        msg = _dsn.scrub_dsn(str(e), url)
        print(f"agentdb init-db: FAILED: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1
    shown = _dsn.hide_password(url)
    print(f"agentdb init-db: {len(tables)} tables ready in {shown}: {', '.join(tables)}")
    return 0
