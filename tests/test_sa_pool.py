"""The dialect's pool (``agentdb.sqlalchemy.AgentdbPool``): one SQLAlchemy connection record
per physical connection of the C pool, so pool events, ``record.info``, ``reset_on_return``,
``status()``, invalidation and pre-ping keep SQLAlchemy's meaning."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.util import greenlet_spawn

import agentdb
import agentdb.sqlalchemy  # noqa: F401
from agentdb.settings import agentdb_url


def make_engine(pg_dsn: str, **kw: Any) -> AsyncEngine:
    kw.setdefault("pool_size", 20)
    kw.setdefault("max_overflow", 10)
    kw.setdefault("pool_pre_ping", True)
    return create_async_engine(agentdb_url(pg_dsn), **kw)


def count_events(engine: AsyncEngine, *names: str) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for name in names:

        def listener(*args: Any, _name: str = name) -> None:
            counts[_name] += 1

        event.listen(engine.sync_engine, name, listener)
    return counts


@pytest.fixture
async def engine(pg_dsn: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(pg_dsn)
    yield eng
    await eng.dispose()


async def backend_pid(session_or_conn: Any) -> int:
    return int((await session_or_conn.execute(text("SELECT pg_backend_pid()"))).scalar())


async def test_connect_fires_once_over_20_sequential_sessions(engine: AsyncEngine) -> None:
    counts = count_events(engine, "connect", "checkout", "checkin", "close")
    pids = set()
    for _ in range(20):
        async with AsyncSession(engine) as session:
            pids.add(await backend_pid(session))
    assert len(pids) == 1
    assert counts == {"connect": 1, "checkout": 20, "checkin": 20}


async def test_connect_fires_once_per_connection_over_concurrent_sessions(pg_dsn: str) -> None:
    engine = make_engine(pg_dsn, pool_size=5, max_overflow=0)
    counts = count_events(engine, "connect", "checkout", "checkin")
    pids: set[int] = set()

    async def one() -> None:
        async with AsyncSession(engine) as session:
            pids.add(await backend_pid(session))
            await session.execute(text("SELECT pg_sleep(0.02)"))

    try:
        await asyncio.gather(*(one() for _ in range(20)))
        assert 1 <= counts["connect"] == len(pids) <= 5
        opened = counts["connect"]
        await asyncio.gather(*(one() for _ in range(20)))
        assert counts["connect"] == opened == len(pids)  # the same connections again
        assert counts["checkout"] == counts["checkin"] == 40
    finally:
        await engine.dispose()


async def test_record_info_survives_checkouts(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_conn: Any, record: Any) -> None:
        record.info["connected_pid"] = dbapi_conn.driver_connection.get_backend_pid()

    @event.listens_for(engine.sync_engine, "checkout")
    def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        record.info["checkouts"] = record.info.get("checkouts", 0) + 1

    for i in range(1, 6):
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert raw.info["checkouts"] == i
            assert raw.info["connected_pid"] == await backend_pid(conn)


async def _table(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        await conn.execute(text(f"CREATE TABLE {name} (a int)"))


def _insert_and_return_raw(engine: AsyncEngine, table: str) -> Callable[[], bool]:
    """Greenlet body: a raw DBAPI connection inserts a row (a transaction the adapter
    began), then is closed without commit or rollback: the pool's reset_on_return decides."""

    def body() -> bool:
        fairy = engine.sync_engine.raw_connection()
        cur = fairy.cursor()
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        cur.close()
        in_txn = fairy.driver_connection.is_in_transaction()
        fairy.close()
        return bool(in_txn)

    return body


async def _rows(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the adapter begins its own transaction
        native = conn.sync_connection.connection.driver_connection
        assert native.is_in_transaction()
        # ...a new one: the earlier one did not survive the check-in (a second BEGIN
        # inside it would have warned, and the row count below would see the insert)
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar())


@pytest.mark.parametrize(("reset", "kept"), [("rollback", 0), ("commit", 1), (None, 0)])
async def test_reset_on_return(pg_dsn: str, reset: str | None, kept: int) -> None:
    """"rollback" rolls the open transaction back, "commit" commits it; None issues
    nothing from SQLAlchemy, and the C pool still rolls an open transaction back before
    the connection's next use (a transaction never survives a check-in)."""
    engine = make_engine(pg_dsn, pool_size=1, max_overflow=0, pool_reset_on_return=reset)
    resets: list[Any] = []
    event.listen(engine.sync_engine, "reset", lambda c, rec, state: resets.append(state))
    table = f"sa_pool_reset_{reset or 'none'}"
    try:
        await _table(engine, table)
        resets.clear()
        assert await greenlet_spawn(_insert_and_return_raw(engine, table)) is True
        assert len(resets) == 1 and not resets[0].transaction_was_reset
        assert await _rows(engine, table) == kept
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await engine.dispose()


async def test_status_counts_connections(pg_dsn: str) -> None:
    engine = make_engine(pg_dsn, pool_size=2, max_overflow=1)
    pool = engine.sync_engine.pool
    try:
        assert pool.size() == 2
        assert pool.checkedout() == 0
        async with engine.connect() as c1, engine.connect() as c2, engine.connect() as c3:
            for c in (c1, c2, c3):
                await c.execute(text("SELECT 1"))
            assert pool.checkedout() == 3
            assert pool.overflow() == 1
            assert "checked out: 3" in pool.status()
            assert "overflow: 1" in pool.status()
        assert pool.checkedout() == 0
        assert pool.checkedin() == 2  # the overflow connection closed on its return
        assert "idle: 2" in pool.status()
    finally:
        await engine.dispose()


async def test_invalidate_closes_the_physical_connection(
    engine: AsyncEngine, pg_dsn: str
) -> None:
    counts = count_events(engine, "connect", "invalidate", "close")
    async with engine.connect() as conn:
        pid = await backend_pid(conn)
        await conn.invalidate()
    assert counts == {"connect": 1, "invalidate": 1, "close": 1}
    assert engine.sync_engine.pool.checkedout() == 0
    async with engine.connect() as conn:
        assert await backend_pid(conn) != pid
    assert counts["connect"] == 2
    admin = await agentdb.connect(pg_dsn)
    try:
        for _ in range(100):
            if not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"backend {pid} still connected after invalidate()")
    finally:
        await admin.close()


def _terminate_blocking(pg_dsn: str, pid: int) -> None:
    """Terminate a backend and wait until it is gone, without letting the event loop
    run: the C pool's socket watch cannot have seen it; only the pre-ping can."""
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        assert c.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (True,)


async def test_terminated_backend_is_found_by_pre_ping_and_replaced(pg_dsn: str) -> None:
    engine = make_engine(pg_dsn, pool_size=1, max_overflow=0)
    counts = count_events(engine, "connect")
    try:
        async with engine.connect() as conn:
            pid = await backend_pid(conn)
        _terminate_blocking(pg_dsn, pid)
        async with engine.connect() as conn:  # no error: a new connection
            assert await backend_pid(conn) != pid
        assert counts["connect"] == 2
    finally:
        await engine.dispose()


async def test_connect_event_state_is_set_again_after_a_session_reset(pg_dsn: str) -> None:
    """A native shortcut on the engine's pool resets a session its SQLAlchemy user changed
    (rule 1): the next checkout of that connection runs the "connect" event again."""
    engine = make_engine(pg_dsn, pool_size=1, max_overflow=0)
    counts = count_events(engine, "connect")

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.autocommit = True  # SQLAlchemy's recipe: the SET outlives the transaction
        cur = dbapi_conn.cursor()
        cur.execute("SET application_name = 'sa_pool_connect'")
        cur.close()
        dbapi_conn.autocommit = False

    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW application_name"))).scalar() == (
                "sa_pool_connect"
            )
        native = engine.sync_engine.pool._native
        assert native is not None
        assert await native.fetchval("SHOW application_name") != "sa_pool_connect"
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW application_name"))).scalar() == (
                "sa_pool_connect"
            )
        assert counts["connect"] == 2
    finally:
        await engine.dispose()


async def test_dispose_closes_idle_connections_and_lets_checked_out_ones_finish(
    pg_dsn: str,
) -> None:
    engine = make_engine(pg_dsn, pool_size=3, max_overflow=0)
    counts = count_events(engine, "connect", "close")
    async with engine.connect() as c1, engine.connect() as c2:
        await c1.execute(text("SELECT 1"))
        await c2.execute(text("SELECT 1"))
    started = asyncio.Event()

    async def busy() -> int:
        async with engine.connect() as conn:
            started.set()
            return int((await conn.execute(text("SELECT 7 FROM pg_sleep(0.3)"))).scalar())

    task = asyncio.create_task(busy())
    await started.wait()
    await engine.dispose()
    assert counts["close"] >= 1  # the idle connection closed at once, with its event
    assert await task == 7  # the checked-out one finished its statement
    assert engine.sync_engine.pool.checkedout() == 0
    await engine.dispose()


async def test_native_pool_pre_ping_reads_an_idle_connection_before_handing_it_out(
    pg_dsn: str,
) -> None:
    """The C pool with pre_ping: a backend terminated while the loop could not run is
    noticed as the connection is handed out (no round trip), and another is used."""
    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0, pre_ping=True)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_backend_pid()
        _terminate_blocking(pg_dsn, pid)
        async with pool.acquire() as conn:
            assert conn.get_backend_pid() != pid
            assert await conn.fetchval("SELECT 1") == 1
        assert pool.stats()["lost"] == 1
    finally:
        await pool.close()


async def test_session_epoch_counts_session_resets(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    try:
        assert conn._session_epoch == 0
        await conn.execute("SET application_name = 'epoch'")
        assert conn._session_epoch == 0  # changed, not reset
        await conn._reset_session()
        assert conn._session_epoch == 1
        with pytest.raises(AttributeError):
            conn._session_epoch = 5  # type: ignore[misc]
    finally:
        await conn.close()


def test_pool_class_takes_sqlalchemy_pool_arguments(pg_dsn: str) -> None:
    engine = make_engine(
        pg_dsn, pool_size=3, max_overflow=2, pool_timeout=4, pool_recycle=60,
        pool_reset_on_return="commit",
    )
    pool = engine.sync_engine.pool
    assert isinstance(pool, agentdb.sqlalchemy.AgentdbPool)
    assert (pool.size(), pool.timeout()) == (3, 4.0)
    assert pool._native_args["max_overflow"] == 2
    assert pool._native_args["pool_recycle"] == 60.0
    assert pool._reset_on_return is sa.pool.base.reset_commit
    recreated = pool.recreate()
    assert recreated._reset_on_return is sa.pool.base.reset_commit
    assert recreated._native_args == pool._native_args
