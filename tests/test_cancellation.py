"""A task cancelled at any await (connect, checkout, close, health check): cancelled, no leak."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

import agentdb
from agentdb import _aio, settings
from agentdb.settings import agentdb_url
from agentdb.sqlalchemy import AgentdbPool

AdminSQL = Callable[..., list[tuple[str, ...]]]
_apps = itertools.count(1)


def app_name(what: str) -> str:
    """An application_name of its own, to find the test's backends in pg_stat_activity."""
    return f"cancel_{what}_{next(_apps)}"


async def backends_gone(admin_sql: AdminSQL, dsn: str, app: str) -> list[tuple[str, ...]]:
    """The backends of ``app`` still there once the server has had time to see their sockets
    closed (polled, up to 10 s: a backend ends shortly after its client hangs up)."""
    sql = f"SELECT pid, coalesce(state, '') FROM pg_stat_activity WHERE application_name = '{app}'"
    for _ in range(100):
        left = admin_sql(dsn, sql)
        if not left:
            return left
        await asyncio.sleep(0.1)
    return left


async def run_cancelled_at_start(make: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
    """Run ``await make()`` in a task that cancels itself first: the cancellation lands at
    the first await that suspends, as ``task.cancel()`` from elsewhere would. Returns the
    task, done."""

    async def body() -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return await make()

    task = asyncio.ensure_future(body())
    await asyncio.wait({task})
    return task


def outcome(task: asyncio.Task[Any]) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return "returned normally" if exc is None else f"raised {exc!r}"


# -- agentdb._aio.wait_for: the deadline used by connect, Pool.close, the health check ---


async def test_wait_for_propagates_a_cancellation_that_meets_the_result() -> None:
    """asyncio.wait_for before 3.12 returns the result here and the cancellation is lost."""
    loop = asyncio.get_running_loop()
    inner: asyncio.Future[int] = loop.create_future()
    caller = asyncio.ensure_future(_aio.wait_for(inner, 10))
    await asyncio.sleep(0)  # the caller now waits for inner
    inner.set_result(1)
    caller.cancel()  # in the same step: the caller wakes to both
    await asyncio.wait({caller})
    assert outcome(caller) == "cancelled"


async def test_wait_for_cancels_and_waits_for_the_inner_on_cancellation() -> None:
    ended: list[str] = []

    async def inner() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # cleanup that awaits
            ended.append("inner")

    caller = asyncio.ensure_future(_aio.wait_for(inner(), 3600))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.wait({caller})
    assert outcome(caller) == "cancelled"
    assert ended == ["inner"]  # the inner had ended when the caller's cancellation arrived


async def test_wait_for_times_out_and_cancels_the_inner() -> None:
    ended: list[str] = []

    async def inner() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    with pytest.raises(TimeoutError):
        await _aio.wait_for(inner(), 0.01)
    assert ended == ["cancelled"]


async def test_wait_for_passes_results_and_errors() -> None:
    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("inner")

    assert await _aio.wait_for(value(), 10) == 7
    assert await _aio.wait_for(value(), None) == 7
    with pytest.raises(ValueError, match="inner"):
        await _aio.wait_for(fails(), 10)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    done.set_result(3)
    assert await _aio.wait_for(done, 10) == 3


# -- agentdb.connect ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["ip", "name"])
async def test_connect_cancelled_as_it_starts(pg_dsn: str, admin_sql: AdminSQL, host: str) -> None:
    """With an IP address connect() resolves nothing (no task, no await) before it
    connects; it used to lose the cancellation in asyncio.wait_for and return a
    connection. A host name goes through the deadline (a lookup task)."""
    app = app_name("connect")
    task = await run_cancelled_at_start(
        lambda: agentdb.connect(pg_dsn, host=host, application_name=app, timeout=10)
    )
    result = None if task.cancelled() or task.exception() else task.result()
    if result is not None:
        await result.close()
    assert outcome(task) == "cancelled"
    assert await backends_gone(admin_sql, pg_dsn, app) == []


@pytest.mark.parametrize(
    "params",
    [
        {"host": "127.0.0.1", "port": "5432"},
        {"host": "127.0.0.1,::1", "port": "5432,5433"},
        {"host": "/var/run/postgresql"},
        {"host": "/tmp,10.0.0.1", "port": "5432"},
        {"host": "@abstract"},
        {"hostaddr": "127.0.0.1", "host": "db.example"},
        {"dbname": "x"},
    ],
)
async def test_resolution_without_lookup_is_resolve_hosts(
    params: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """connect()'s path without a task (no host name to look up) gives what
    resolve_hosts() gives."""
    from agentdb import dsn

    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.delenv("PGPORT", raising=False)
    assert dsn.resolve_without_lookup(params) == await dsn.resolve_hosts(params)


def test_a_host_name_needs_the_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentdb import dsn

    monkeypatch.delenv("PGPORT", raising=False)
    assert dsn.resolve_without_lookup({"host": "localhost"}) is None
    assert dsn.resolve_without_lookup({"host": "127.0.0.1,localhost"}) is None
    monkeypatch.setenv("PGHOST", "localhost")
    assert dsn.resolve_without_lookup({}) is None


# -- the native pool ------------------------------------------------------------------


@pytest.mark.parametrize("idle", [0, 1], ids=["empty", "idle-connection"])
async def test_pool_acquire_cancelled_as_it_starts(
    pg_dsn: str, admin_sql: AdminSQL, idle: int
) -> None:
    app = app_name("acquire")
    pool = await agentdb.create_pool(
        pg_dsn, pool_size=1, max_overflow=0, pool_timeout=5, min_size=idle, application_name=app
    )
    try:

        async def use() -> None:
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")

        task = await run_cancelled_at_start(use)
        assert outcome(task) == "cancelled"
        for _ in range(100):  # a connection still opening for the cancelled waiter
            if pool.stats()["opening"] == 0:
                break
            await asyncio.sleep(0.05)
        s = pool.stats()
        assert (s["in_use"], s["waiting"], s["shared"]) == (0, 0, 0), s
        async with pool.acquire() as conn:  # the one slot still works
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close(timeout=5)
    assert await backends_gone(admin_sql, pg_dsn, app) == []


@pytest.mark.parametrize("min_size", [0, 1], ids=["empty", "idle-connection"])
async def test_pool_close_cancelled(pg_dsn: str, admin_sql: AdminSQL, min_size: int) -> None:
    """Nothing to wait for: the drain future is done at once; asyncio.wait_for returned
    its result to the cancelled caller instead of raising."""
    app = app_name("close")
    pool = await agentdb.create_pool(pg_dsn, min_size=min_size, application_name=app)
    task = await run_cancelled_at_start(lambda: pool.close(timeout=5))
    assert outcome(task) == "cancelled"
    assert pool.is_closing()
    assert pool.stats()["size"] == 0  # terminated on the way out all the same
    assert await backends_gone(admin_sql, pg_dsn, app) == []


async def test_pool_close_cancelled_while_a_connection_is_out(
    pg_dsn: str, admin_sql: AdminSQL
) -> None:
    app = app_name("closeout")
    pool = await agentdb.create_pool(pg_dsn, min_size=1, application_name=app)
    conn = await pool.acquire()
    closing = asyncio.ensure_future(pool.close(timeout=3600))
    await asyncio.sleep(0.05)
    assert not closing.done()
    await pool.release(conn)  # the pool drains ...
    closing.cancel()  # ... as its closer is cancelled
    await asyncio.wait({closing})
    assert outcome(closing) == "cancelled"
    assert pool.stats()["size"] == 0
    assert await backends_gone(admin_sql, pg_dsn, app) == []


# -- the FastAPI health check ---------------------------------------------------------


async def test_check_database_connection_cancelled_as_its_probe_finishes(pg_dsn: str) -> None:
    """The caller is cancelled in the very step its probe returns True: the check must
    raise CancelledError (asyncio.wait_for returned True and the cancellation was lost)."""
    settings.configure(database_url=agentdb_url(pg_dsn))
    try:
        assert await agentdb.check_database_connection()  # the engine and pool exist now
        before = asyncio.all_tasks()
        checking = asyncio.ensure_future(agentdb.check_database_connection(timeout=10))
        await asyncio.sleep(0)  # the check starts its probe
        probes = asyncio.all_tasks() - before - {checking}
        if probes:  # cancel the check from the probe's done callback: the tightest race
            for probe in probes:
                probe.add_done_callback(lambda _t: checking.cancel())
        else:  # the probe runs in the check's own task
            checking.cancel()
        await asyncio.wait({checking})
        assert outcome(checking) == "cancelled"
        pool = await agentdb.get_pool()
        for _ in range(100):
            if pool.stats()["in_use"] + pool.stats()["shared"] == 0:
                break
            await asyncio.sleep(0.05)
        assert pool.stats()["in_use"] + pool.stats()["shared"] == 0, pool.stats()
        assert await agentdb.check_database_connection()
    finally:
        await agentdb.close_db_connection()
        settings.reset()


# -- the SQLAlchemy dialect -----------------------------------------------------------

POOLS = {"AgentdbPool": AgentdbPool, "AsyncAdaptedQueuePool": AsyncAdaptedQueuePool}


def make_engine(pg_dsn: str, poolclass: type[Any], app: str) -> AsyncEngine:
    """The engine SQLAlchemy's cancellation tests use: one slot, a short pool timeout."""
    return create_async_engine(
        f"{agentdb_url(pg_dsn)}?application_name={app}",
        poolclass=poolclass,
        pool_size=1,
        max_overflow=0,
        pool_timeout=1,
    )


@pytest.mark.parametrize("pool_name", list(POOLS))
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
async def test_sa_checkout_cancelled_as_it_starts(
    pg_dsn: str, admin_sql: AdminSQL, pool_name: str, warm: bool
) -> None:
    """AsyncAdaptedQueuePool connects through the dialect's DBAPI ``connect`` (which lost
    the cancellation in agentdb.connect); AgentdbPool checks out of the native pool."""
    app = app_name("sa")
    engine = make_engine(pg_dsn, POOLS[pool_name], app)

    async def use() -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.select(1))

    try:
        if warm:
            await use()
        task = await run_cancelled_at_start(use)
        assert outcome(task) == "cancelled"
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        await use()  # the one slot still works
    finally:
        await engine.dispose()
    assert await backends_gone(admin_sql, pg_dsn, app) == []


async def _session_execute_commit(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session:
        await session.execute(sa.select(1))
        await session.commit()


async def _connect_close_then_reuse(engine: AsyncEngine) -> None:
    conn = await engine.connect()
    try:
        await conn.execute(sa.select(1))
        await conn.commit()
    except asyncio.CancelledError:
        await conn.close()
        raise
    try:
        await conn.close()
    except asyncio.CancelledError:
        async with engine.connect() as conn2:
            if not conn.closed:
                await conn.invalidate()
            await conn2.execute(sa.select(1))
        raise


SCENARIOS: dict[str, Callable[[AsyncEngine], Awaitable[None]]] = {
    "session": _session_execute_commit,
    "close-then-reuse": _connect_close_then_reuse,
}


@pytest.fixture
def sa_cancellation() -> Any:
    return pytest.importorskip(
        "sqlalchemy.testing.cancellation", reason="SQLAlchemy < 2.1 has no cancellation sweep"
    )


# Under AgentdbPool every scenario; AsyncAdaptedQueuePool (what SQLAlchemy's own test pins,
# all of it run by compliance/sa_tests.sh) only where agentdb.connect() lost the cancellation.
SWEEPS = [("AgentdbPool", scenario, warm) for scenario in SCENARIOS for warm in (False, True)]
SWEEPS.append(("AsyncAdaptedQueuePool", "session", False))


@pytest.mark.parametrize(
    ("pool_name", "scenario", "warm"),
    SWEEPS,
    ids=[f"{p}-{s}-{'warm' if w else 'cold'}" for p, s, w in SWEEPS],
)
async def test_sa_cancellation_sweep(
    pg_dsn: str,
    admin_sql: AdminSQL,
    sa_cancellation: Any,
    pool_name: str,
    scenario: str,
    warm: bool,
) -> None:
    """SQLAlchemy's own sweep (``sqlalchemy.testing.cancellation``, as its
    test/ext/asyncio/test_cancellation.py runs it): cancel the scenario at each of its
    await points in turn; the task ends cancelled, no connection leaks, no slot is lost,
    the pool still works. Under agentdb's default pool too (SQLAlchemy's test pins
    AsyncAdaptedQueuePool)."""
    app = app_name("sweep")
    failures = await sa_cancellation.sweep(
        lambda: make_engine(pg_dsn, POOLS[pool_name], app), SCENARIOS[scenario], warm=warm
    )
    assert failures == []
    assert await backends_gone(admin_sql, pg_dsn, app) == []
