"""A released connection reaches its next borrower as it was right after connect: no
transaction, settings, temporary tables, locks, listeners, cursors or prepared
statements left by the last user, and no Python-side state (transaction stack,
listeners); create_pool(reset=...) chooses the rule; the SQLAlchemy dialect keeps
SQLAlchemy's (rollback only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import agentdb

STATE_SQL = (
    "SELECT current_setting('search_path') AS search_path,"
    " current_setting('statement_timeout') AS statement_timeout,"
    " current_user = session_user AS own_role,"
    " (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
    "  AND relname = 'reset_tmp') AS temp_tables,"
    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    "  AND pid = pg_backend_pid()) AS advisory_locks,"
    " (SELECT count(*) FROM pg_listening_channels()) AS listening,"
    " (SELECT count(*) FROM pg_cursors WHERE name <> '') AS cursors,"
    " (SELECT count(*) FROM pg_prepared_statements WHERE name = 'reset_stmt') AS prepared"
)

CLEAN = {
    "search_path": '"$user", public',
    "statement_timeout": "0",
    "own_role": True,
    "temp_tables": 0,
    "advisory_locks": 0,
    "listening": 0,
    "cursors": 0,
    "prepared": 0,
}


@pytest.fixture
async def pool1(pg_dsn: str) -> AsyncIterator[agentdb.Pool]:
    """One connection: every borrower gets the same backend."""
    p = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0)
    try:
        yield p
    finally:
        await p.close(timeout=5)


async def dirty(conn: agentdb.Connection) -> None:
    await conn.execute("SET search_path = pg_catalog")
    await conn.execute("SET statement_timeout = '4321ms'")
    await conn.execute("CREATE TEMP TABLE reset_tmp (a int)")
    await conn.fetchval("SELECT pg_advisory_lock(31337)")
    await conn.execute("LISTEN reset_channel")
    await conn.execute("BEGIN")
    await conn.execute("DECLARE reset_cur CURSOR WITH HOLD FOR SELECT 1")
    await conn.execute("COMMIT")
    await conn.execute("PREPARE reset_stmt AS SELECT 1")
    await conn.execute("SET ROLE pg_read_all_data")


async def test_next_borrower_gets_a_clean_session(pool1: agentdb.Pool) -> None:
    async with pool1.acquire() as c:
        pid = c.get_backend_pid()
        await dirty(c)
        row = await c.fetchrow(STATE_SQL)
        assert row is not None and dict(row.items()) != CLEAN
    async with pool1.acquire() as c:
        assert c.get_backend_pid() == pid
        row = await c.fetchrow(STATE_SQL)
        assert row is not None and dict(row.items()) == CLEAN
    assert pool1.stats()["session_resets"] == 1


async def test_reset_keeps_connect_time_settings(pg_dsn: str) -> None:
    pool = await agentdb.create_pool(
        pg_dsn, pool_size=1, max_overflow=0, server_settings={"statement_timeout": "7s"}
    )
    try:
        async with pool.acquire() as c:
            await c.execute("SET statement_timeout = '1s'")
        async with pool.acquire() as c:
            assert await c.fetchval("SHOW statement_timeout") == "7s"
    finally:
        await pool.close(timeout=5)


async def test_a_clean_session_costs_no_reset(pool1: agentdb.Pool) -> None:
    for _ in range(5):
        async with pool1.acquire() as c:
            await c.fetch("SELECT * FROM pg_class LIMIT 3")
            async with c.transaction():
                await c.execute("SELECT 1")
    stats = pool1.stats()
    assert stats["session_resets"] == 0 and stats["rollbacks"] == 0


async def test_reset_is_pipelined_ahead_of_the_next_statements(pool1: agentdb.Pool) -> None:
    """The reset is queued, not awaited: the next borrower gets the connection at once
    and its first statement runs after the reset, in the same trip."""
    async with pool1.acquire() as c:
        await c.execute("SET search_path = pg_catalog")
        await c.execute("BEGIN")
    conn = await pool1.acquire()
    try:
        assert conn._pending() >= 2  # ROLLBACK and the session reset, queued
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SHOW search_path") == '"$user", public'
    finally:
        await pool1.release(conn)


async def test_an_open_transaction_object_ends_with_the_release(pool1: agentdb.Pool) -> None:
    conn = await pool1.acquire()
    tr = conn.transaction()
    await tr.start()
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS reset_tx (a int)")
    await pool1.release(conn)
    async with pool1.acquire() as c:
        assert c._transactions == []
        async with c.transaction():  # not a SAVEPOINT: the stack is empty
            async with c.transaction():
                assert await c.fetchval("SELECT 1") == 1
    with pytest.raises(agentdb.InterfaceError, match="released to its pool"):
        await tr.commit()
    await tr.rollback()  # nothing to do: the pool rolled it back


async def test_listeners_and_log_listeners_are_forgotten(pool1: agentdb.Pool) -> None:
    async with pool1.acquire() as c:
        await c.add_listener("reset_ch", lambda *a: None)
        c.add_log_listener(lambda *a: None)
    async with pool1.acquire() as c:
        assert c._listeners() == {} and c._notice_handlers() == []
        assert await c.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0


async def test_reset_transaction_keeps_session_state(pg_dsn: str) -> None:
    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0, reset="transaction")
    try:
        async with pool.acquire() as c:
            await c.execute("SET search_path = pg_catalog")
            await c.execute("BEGIN")
            await c.execute("CREATE TEMP TABLE reset_kept (a int)")
        async with pool.acquire() as c:
            assert not c.is_in_transaction()
            assert await c.fetchval("SHOW search_path") == "pg_catalog"
            # rolled back with its transaction, so the table is gone
            assert await c.fetchval("SELECT to_regclass('pg_temp.reset_kept')") is None
        assert pool.stats()["session_resets"] == 0
    finally:
        await pool.close(timeout=5)


@pytest.mark.parametrize("reset", ["transaction", "callable"])
async def test_shortcuts_start_from_a_clean_session_whatever_the_rule(
    pg_dsn: str, reset: str
) -> None:
    """A borrower's session state that the rule lets persist never reaches a shortcut;
    and a shortcut's own session change is reset by the pool whatever the rule."""

    async def keep(conn: agentdb.Connection) -> None:
        return None

    pool = await agentdb.create_pool(
        pg_dsn, pool_size=1, max_overflow=0, reset=keep if reset == "callable" else reset
    )
    try:
        async with pool.acquire() as c:
            await c.execute("SET search_path = pg_catalog")
        if reset == "transaction":
            async with pool.acquire() as c:  # kept for the next borrower...
                assert await c.fetchval("SHOW search_path") == "pg_catalog"
        # ... but not for a shortcut
        assert await pool.fetchval("SHOW search_path") == '"$user", public'
        await pool.execute("SET search_path = pg_catalog")
        assert await pool.fetchval("SHOW search_path") == '"$user", public'
    finally:
        await pool.close(timeout=5)


async def test_reset_callable_runs_on_every_release(pg_dsn: str) -> None:
    calls: list[int] = []

    async def reset(conn: agentdb.Connection) -> None:
        calls.append(conn.get_backend_pid())
        assert not conn.is_in_transaction()  # rolled back before it
        await conn.execute("RESET search_path")

    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0, reset=reset)
    try:
        async with pool.acquire() as c:
            await c.execute("SET search_path = pg_catalog")
            await c.execute("BEGIN")
        async with pool.acquire() as c:
            assert await c.fetchval("SHOW search_path") == '"$user", public'
        async with pool.acquire() as c:
            pass
        assert len(calls) == 2
    finally:
        await pool.close(timeout=5)


async def test_reset_callable_that_raises_closes_the_connection(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def reset(conn: agentdb.Connection) -> None:
        raise RuntimeError("reset failed on purpose")

    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0, reset=reset)
    try:
        async with pool.acquire() as c:
            first = c.get_backend_pid()
        async with pool.acquire() as c:
            assert c.get_backend_pid() != first
        assert "reset failed on purpose" in caplog.text
    finally:
        await pool.close(timeout=5)


async def test_reset_argument_is_checked(pg_dsn: str) -> None:
    with pytest.raises(ValueError, match="reset must be"):
        await agentdb.create_pool(pg_dsn, reset="everything", min_size=0)


async def test_connection_reset(conn: agentdb.Connection) -> None:
    await dirty(conn)
    await conn.execute("BEGIN")
    await conn.reset()
    assert not conn.is_in_transaction()
    row = await conn.fetchrow(STATE_SQL)
    assert row is not None and dict(row.items()) == CLEAN
    # the statement cache survives a reset, but not the user's own DEALLOCATE ALL
    assert await conn.fetchval("SELECT $1::int", 5) == 5


async def test_user_prepared_statements_are_dropped_and_ours_prepared_again(
    pool1: agentdb.Pool,
) -> None:
    async with pool1.acquire() as c:
        assert await c.fetchval("SELECT $1::int + 1", 1) == 2  # in the statement cache
        await c.execute("PREPARE reset_stmt AS SELECT 1")
    async with pool1.acquire() as c:
        assert await c.fetchval(
            "SELECT count(*) FROM pg_prepared_statements WHERE name = 'reset_stmt'"
        ) == 0
        assert await c.fetchval("SELECT $1::int + 1", 2) == 3


async def test_sqlalchemy_keeps_connect_event_state_and_rolls_back(pg_dsn: str) -> None:
    """The dialect keeps SQLAlchemy's semantics: what a "connect" event set persists for
    the physical connection (set outside a transaction, as SQLAlchemy's PostgreSQL docs do
    it: a SET inside the transaction the adapter begins is rolled back with it, as on
    SQLAlchemy+asyncpg); a checkout returns rolled back."""
    from sqlalchemy import event, text
    from sqlalchemy.ext.asyncio import create_async_engine

    url = pg_dsn.replace("postgresql://", "postgresql+agentdb://", 1)
    engine = create_async_engine(url, pool_size=1, max_overflow=0)

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_conn: Any, record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        cur = dbapi_conn.cursor()
        cur.execute("SET application_name = 'from_connect_event'")
        cur.close()
        dbapi_conn.autocommit = autocommit

    try:
        async with engine.connect() as c:
            await c.execute(text("CREATE TEMP TABLE IF NOT EXISTS sa_reset (a int)"))
            await c.execute(text("INSERT INTO sa_reset VALUES (1)"))
            # not committed: rolled back on return
        for _ in range(3):
            async with engine.connect() as c:
                name = (await c.execute(text("SHOW application_name"))).scalar()
                assert name == "from_connect_event"
                rows = (await c.execute(text(
                    "SELECT count(*) FROM pg_class WHERE relname = 'sa_reset'"
                ))).scalar()
                assert rows == 0  # its CREATE was rolled back with the transaction
    finally:
        await engine.dispose()
