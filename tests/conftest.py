"""The suite's PostgreSQL, event loop choice and loop-error guard.

Server discovery (once per session, see ``_pg_server``):
1. ``AGENTDB_TEST_DSN``, when set: that server, as given;
2. else a server on 127.0.0.1:5432 (``pg_isready``, else a TCP connect) that lets user
   postgres in without a password;
3. else a throwaway cluster (``agentdb.testing.cluster.TempCluster``), removed at the end.
On it the suite uses the database ``agentdb_test`` (``AGENTDB_TEST_DBNAME``), created when
missing. No server at all is a failure, never a skip.

``pg_cluster`` is always a throwaway cluster of the suite's own, started on first use, for
fault tests that stop, restart or lock out the server.

``--uvloop`` (or ``AGENTDB_TEST_UVLOOP=1``) runs every async test on uvloop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from agentdb.dsn import hide_password
from agentdb.testing.cluster import (
    LOCAL_DSN,
    ClusterError,
    TempCluster,
    admin_sql,
    dsn_with_dbname,
    local_server_dsn,
)

SERVER_SKIP_WORDS = re.compile(r"postgres|server|database|\bpsql\b|libpq|\bdsn\b", re.I)

pytest_plugins = ["pytester"]


__all__ = ["admin_sql"]


# -- options and reporting ----------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """The suite needs the core's test hooks: a build made with AGENTDB_TESTING=1."""
    from agentdb import _core

    if not hasattr(_core, "_handle_counts"):
        raise pytest.UsageError(
            "agentdb._core was built without its test hooks: build it with "
            "AGENTDB_TESTING=1 (.ci/setup.sh does), e.g. AGENTDB_TESTING=1 pip install ."
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agentdb")
    group.addoption(
        "--uvloop",
        action="store_true",
        default=False,
        help="run async tests on uvloop (also: AGENTDB_TEST_UVLOOP=1)",
    )


def _use_uvloop(config: pytest.Config) -> bool:
    flag = os.environ.get("AGENTDB_TEST_UVLOOP", "").strip().lower()
    return bool(config.getoption("--uvloop")) or flag in ("1", "true", "yes", "on")


#: ``dsn`` with any password replaced by ``***`` (for printing).
redact = hide_password


def pytest_report_header(config: pytest.Config) -> list[str]:
    loop = "uvloop" if _use_uvloop(config) else "asyncio"
    env = os.environ.get("AGENTDB_TEST_DSN")
    where = (
        f"AGENTDB_TEST_DSN={redact(env)}"
        if env
        else "127.0.0.1:5432 if it answers, else a throwaway cluster"
    )
    import agentdb

    return [
        f"agentdb: event loop {loop}; server: {where}",
        f"agentdb: {agentdb.__file__} (libpq {agentdb.libpq_version()})",
        f"agentdb: libpq capabilities: {agentdb.libpq_capabilities()}",
    ]


_used_server: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _used_server:
        terminalreporter.write_line(f"agentdb test server: {line}")


# -- event loop: uvloop switch and exception-handler guard --------------------

_loop_errors: list[dict[str, Any]] = []


def _record_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    _loop_errors.append(context)
    loop.default_exception_handler(context)  # still logged as usual


def _guarded(factory: Callable[[], asyncio.AbstractEventLoop]) -> Callable[[], Any]:
    def new_loop() -> asyncio.AbstractEventLoop:
        loop = factory()
        loop.set_exception_handler(_record_loop_error)
        return loop

    return new_loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio >= 1.5: every async test's loop comes from here (one factory)."""
    if _use_uvloop(config):
        import uvloop

        return {"uvloop": _guarded(uvloop.new_event_loop)}
    return {"asyncio": _guarded(asyncio.new_event_loop)}


def _format_loop_error(ctx: dict[str, Any]) -> str:
    exc = ctx.get("exception")
    text = str(ctx.get("message", "unhandled error in the event loop"))
    if exc is not None:
        text += f": {type(exc).__name__}: {exc}"
    return text


def _fail_on_loop_errors() -> None:
    gc.collect()  # "Task exception was never retrieved" is reported when the task dies
    errors, _loop_errors[:] = list(_loop_errors), []
    if errors:
        pytest.fail(
            "the event loop reported unhandled exceptions:\n"
            + "\n".join(f"  - {_format_loop_error(c)}" for c in errors),
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail the test itself (not its teardown) when its loop logged an error while it ran."""
    result = yield
    _fail_on_loop_errors()
    return result


@pytest.fixture(autouse=True)
def _loop_exception_guard() -> Iterator[None]:
    """Fail a test whose event loop reported an unhandled exception.

    Catches exceptions raised in reader/writer/call_soon callbacks, futures and tasks
    whose exception nobody retrieved, and the like: errors asyncio only logs. Errors
    during the test fail the test; errors while its fixtures tear down fail the teardown.
    """
    _loop_errors.clear()
    yield
    _fail_on_loop_errors()


# -- a missing server fails, it never skips -----------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
        if SERVER_SKIP_WORDS.search(reason):
            report.outcome = "failed"
            report.longrepr = f"a test may not skip for want of a server: {reason}"
    return report


# -- the server ----------------------------------------------------------------


@dataclass
class PgServer:
    admin_dsn: str  # the server's maintenance database (postgres), as found
    dsn: str  # the suite's own database on it
    source: str
    cluster: TempCluster | None = None


def _ensure_database(admin_dsn: str, dbname: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", dbname):
        raise ClusterError(f"test database name {dbname!r} must be a plain identifier")
    if admin_sql(admin_dsn, f"SELECT 1 FROM pg_database WHERE datname = '{dbname}'"):
        return
    try:
        admin_sql(admin_dsn, f"CREATE DATABASE {dbname}")
    except ClusterError as e:
        if "already exists" not in str(e):  # a concurrent run made it first
            raise


def discover_server() -> PgServer:
    """Find (or start) the suite's server; raise ClusterError when there is none."""
    dbname = os.environ.get("AGENTDB_TEST_DBNAME", "agentdb_test")
    env = os.environ.get("AGENTDB_TEST_DSN")
    if env:
        _ensure_database(env, dbname)
        return PgServer(env, dsn_with_dbname(env, dbname), "AGENTDB_TEST_DSN")
    if local_server_dsn() is not None:
        _ensure_database(LOCAL_DSN, dbname)
        return PgServer(LOCAL_DSN, dsn_with_dbname(LOCAL_DSN, dbname), "127.0.0.1:5432")
    cluster = TempCluster({"max_connections": 200})
    try:
        cluster.start()
        _ensure_database(cluster.dsn(), dbname)
    except BaseException:
        cluster.cleanup()
        raise
    return PgServer(cluster.dsn(), cluster.dsn(dbname), "throwaway cluster", cluster)


@pytest.fixture(scope="session")
def _pg_server() -> Iterator[PgServer]:
    try:
        server = discover_server()
    except ClusterError as e:
        pytest.fail(f"no PostgreSQL for the tests: {e}", pytrace=False)
    _used_server.append(f"{server.source}: {redact(server.dsn)}")
    try:
        yield server
    finally:
        if server.cluster is not None:
            server.cluster.cleanup()


@pytest.fixture(scope="session")
def pg_dsn(_pg_server: PgServer) -> str:
    """DSN of the suite's database (``agentdb_test``) on the discovered server."""
    return _pg_server.dsn


@pytest.fixture(scope="session")
def pg_admin_dsn(_pg_server: PgServer) -> str:
    """DSN of the discovered server's maintenance database (``postgres``)."""
    return _pg_server.admin_dsn


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[TempCluster]:
    """A throwaway cluster the suite fully controls (stop it, restart it, lock it out).

    Started on first use. A test that stops it or changes its pg_hba.conf should use
    ``fault_cluster``, which puts it back for the next test.
    """
    try:
        cluster = TempCluster({"max_connections": 100})
        cluster.start()
    except ClusterError as e:
        pytest.fail(f"cannot start a throwaway PostgreSQL cluster: {e}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def fault_cluster(pg_cluster: TempCluster) -> Iterator[TempCluster]:
    """``pg_cluster``, running, with default pg_hba.conf; restored after the test."""
    if not pg_cluster.running:
        pg_cluster.start()
    yield pg_cluster
    pg_cluster.reset_hba()
    if not pg_cluster.running:
        pg_cluster.start()


@pytest.fixture
def tls_cluster(fault_cluster: TempCluster, tmp_path: Any) -> Iterator[tuple[TempCluster, str]]:
    """``fault_cluster`` with ssl=on and a certificate for ``localhost`` signed by a
    throwaway CA (faults/tls.py); yields (cluster, path of the CA certificate)."""
    from faults.tls import serving_tls

    with serving_tls(fault_cluster, str(tmp_path)) as ca:
        yield fault_cluster, ca


@pytest.fixture(name="admin_sql", scope="session")
def admin_sql_fixture() -> Callable[..., list[tuple[str, ...]]]:
    """``admin_sql(dsn, sql) -> [tuple of str, ...]``: SQL through psql, not agentdb."""
    return admin_sql


@pytest.fixture
async def conn(pg_dsn: str) -> Any:
    """A fresh native connection to the suite's database, closed after the test."""
    import agentdb

    c = await agentdb.connect(pg_dsn, timeout=10)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def fault_proxy(pg_dsn: str) -> Iterator[Any]:
    """A ``tests.faults.proxy.FaultProxy`` in front of the suite's server.

    ``fault_proxy.dsn`` is the suite's database through the proxy; switch faults with
    ``.silent() .reset() .latency(s) .restore()``. Closed (every link reset) after the test.
    """
    from faults.proxy import FaultProxy

    parts = urlsplit(pg_dsn)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.dsn = proxy.url(parts.path.lstrip("/") or "postgres", parts.username or "postgres")
    try:
        yield proxy
    finally:
        proxy.close()
