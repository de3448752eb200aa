"""Pool shortcuts share connections without mixing their callers: one caller's session
changes and transactions never reach another, a fast statement does not wait behind a
slow one while another connection can take it, and abandoned statements stop on the
server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

import agentdb

AdminSql = Callable[..., list[tuple[str, ...]]]


@pytest.fixture
async def pool5(pg_dsn: str) -> AsyncIterator[agentdb.Pool]:
    app = f"share-{uuid.uuid4().hex[:8]}"
    p = await agentdb.create_pool(
        pg_dsn, pool_size=5, max_overflow=0, min_size=5, application_name=app
    )
    try:
        yield p
    finally:
        await p.close(timeout=5)


async def share_all(pool: agentdb.Pool) -> None:
    """Put every connection of the pool into shortcut use (none idle)."""
    await asyncio.gather(*(pool.fetchval("SELECT pg_sleep(0.05)") for _ in range(15)))


async def active_backends(admin_sql: AdminSql, dsn: str, app: str, like: str) -> int:
    rows = await asyncio.to_thread(
        admin_sql,
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
        f"'{app}' AND state = 'active' AND query LIKE '{like}'",
    )
    return int(rows[0][0])


# -- one caller's session state never reaches another (items 1, 2) ----------------


async def test_set_through_a_shortcut_is_seen_by_no_other_caller(pool5: agentdb.Pool) -> None:
    await share_all(pool5)
    default = await pool5.fetchval("SHOW statement_timeout")
    assert await pool5.execute("SET statement_timeout = '1234ms'") == "SET"
    seen = await asyncio.gather(*(pool5.fetchval("SHOW statement_timeout") for _ in range(40)))
    assert set(seen) == {default}
    assert pool5.stats()["isolated_shortcuts"] >= 1


async def test_set_config_inside_a_select_is_isolated_too(pool5: agentdb.Pool) -> None:
    await share_all(pool5)
    await pool5.fetchval("SELECT set_config('application_name', 'changed', false)")
    names = await asyncio.gather(*(pool5.fetchval("SHOW application_name") for _ in range(40)))
    assert "changed" not in names


async def test_begin_through_a_shortcut_captures_no_other_caller(
    pool5: agentdb.Pool, pg_dsn: str, admin_sql: AdminSql
) -> None:
    table = f"share_begin_{uuid.uuid4().hex[:8]}"
    await pool5.execute(f"CREATE TABLE {table} (n int)")
    try:
        await share_all(pool5)
        # BEGIN issued among the others: they share the pool's connections with it
        results = await asyncio.gather(
            pool5.execute("BEGIN"),
            *(pool5.execute(f"INSERT INTO {table} VALUES ($1)", i) for i in range(40)),
        )
        assert results == ["BEGIN"] + ["INSERT 0 1"] * 40
        # Committed, each in its own implicit transaction: another session sees them all.
        rows = await asyncio.to_thread(admin_sql, pg_dsn, f"SELECT count(*) FROM {table}")
        assert rows == [("40",)]
        in_txn = await asyncio.gather(
            *(pool5.fetchval("SELECT now() < statement_timestamp() - interval '1 s'")
              for _ in range(20))
        )
        assert not any(in_txn)
    finally:
        await pool5.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize(
    "statement",
    [
        "LISTEN share_channel",
        "CREATE TEMP TABLE share_tmp (a int)",
        "SELECT pg_advisory_lock(4242)",
        "PREPARE share_stmt AS SELECT 1",
        "SET search_path = pg_catalog",
    ],
)
async def test_session_changing_shortcut_leaves_nothing_behind(
    pool5: agentdb.Pool, statement: str
) -> None:
    await share_all(pool5)
    await pool5.execute(statement)
    checks = await asyncio.gather(
        *(
            pool5.fetchrow(
                "SELECT (SELECT count(*) FROM pg_listening_channels()) AS listening,"
                " (SELECT count(*) FROM pg_class WHERE relname = 'share_tmp'"
                "  AND relnamespace = pg_my_temp_schema()) AS temp_tables,"
                " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                "  AND pid = pg_backend_pid()) AS locks,"
                " (SELECT count(*) FROM pg_prepared_statements"
                "  WHERE name = 'share_stmt') AS prepared,"
                " current_setting('search_path') AS search_path"
            )
            for _ in range(40)
        )
    )
    for row in checks:
        assert row is not None
        assert (row["listening"], row["temp_tables"], row["locks"], row["prepared"]) == (
            0,
            0,
            0,
            0,
        )
        assert row["search_path"] == '"$user", public'


async def test_refused_encoding_change_through_a_shortcut(pool5: agentdb.Pool) -> None:
    with pytest.raises(agentdb.InterfaceError, match="client_encoding"):
        await pool5.execute("SET client_encoding = 'LATIN1'")
    assert await pool5.fetchval("SHOW client_encoding") == "UTF8"


# -- a fast statement does not wait behind a slow one (item 5) ---------------------


async def test_fast_shortcut_avoids_a_connection_running_a_slow_statement(
    pg_dsn: str,
) -> None:
    pool = await agentdb.create_pool(pg_dsn, pool_size=2, max_overflow=0, min_size=2)
    try:
        await asyncio.gather(*(pool.fetchval("SELECT pg_backend_pid()") for _ in range(10)))
        slow = asyncio.ensure_future(pool.fetchrow("SELECT pg_backend_pid() AS pid, pg_sleep(3)"))
        await asyncio.sleep(0.1)
        for _ in range(5):
            # issued together: counting statements in flight would put half of them
            # behind the slow one
            fast = [asyncio.ensure_future(pool.fetchval("SELECT pg_backend_pid()"))
                    for _ in range(10)]
            done, pending = await asyncio.wait(fast, timeout=2)
            assert not pending and not slow.done()
        slow_row = await slow
        assert slow_row is not None
        assert slow_row["pid"] not in {f.result() for f in done}
    finally:
        await pool.close(timeout=5)


async def test_fast_shortcut_avoids_a_usually_fast_statement_that_is_stuck(
    pg_dsn: str, admin_sql: AdminSql
) -> None:
    """A statement known to be fast that is held up (a lock) is noticed by its age: past
    twice its usual time, nothing more queues behind it."""
    key = 77001
    sql = f"SELECT pg_backend_pid() AS pid, pg_advisory_xact_lock({key})"
    pool = await agentdb.create_pool(pg_dsn, pool_size=2, max_overflow=0, min_size=2)
    holder = await agentdb.connect(pg_dsn)
    try:
        for _ in range(10):
            await pool.fetchrow(sql)  # measured: fast
        await holder.execute("BEGIN")
        await holder.fetchval(f"SELECT pg_advisory_xact_lock({key})")
        stuck = asyncio.ensure_future(pool.fetchrow(sql))
        await asyncio.sleep(0.2)
        assert not stuck.done()
        fast = [asyncio.ensure_future(pool.fetchval("SELECT pg_backend_pid()"))
                for _ in range(20)]
        done, pending = await asyncio.wait(fast, timeout=5)
        assert not pending and not stuck.done()
        await holder.execute("ROLLBACK")
        row = await stuck
        assert row is not None and row["pid"] not in {f.result() for f in done}
    finally:
        await holder.close()
        await pool.close(timeout=5)


async def test_pool_grows_rather_than_queue_behind_slow_statements(pg_dsn: str) -> None:
    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=2, min_size=1)
    try:
        await pool.fetchval("SELECT pg_sleep(0.01)")
        slow = asyncio.ensure_future(pool.fetchval("SELECT pg_sleep(2)"))
        await asyncio.sleep(0.1)
        assert await pool.fetchval("SELECT 1") == 1
        assert not slow.done()
        assert pool.stats()["size"] == 2
        await slow
    finally:
        await pool.close(timeout=5)


async def test_statements_are_timed_per_text(pool5: agentdb.Pool) -> None:
    await asyncio.gather(*(pool5.fetchval("SELECT 1") for _ in range(20)))
    await pool5.fetchval("SELECT pg_sleep(0.2)")
    profiles = pool5._profiles()
    assert profiles["SELECT 1"].runs >= 1
    assert profiles["SELECT pg_sleep(0.2)"].mean >= 0.19
    assert profiles["SELECT 1"].mean < profiles["SELECT pg_sleep(0.2)"].mean


async def test_acquire_is_served_while_shortcuts_keep_every_connection_busy(
    pg_dsn: str,
) -> None:
    """A waiter for a connection of its own gets one: the pool stops queueing shortcuts
    on a shared connection so that it drains."""
    pool = await agentdb.create_pool(pg_dsn, pool_size=2, max_overflow=0, min_size=2)
    stop = False

    async def hammer() -> None:
        while not stop:
            await pool.fetchval("SELECT pg_sleep(0.005)")

    hammers = [asyncio.ensure_future(hammer()) for _ in range(10)]
    try:
        await asyncio.sleep(0.1)
        async with pool.acquire(timeout=5) as conn:
            assert await conn.fetchval("SELECT 1") == 1
        await pool.execute("SET work_mem = '8MB'")  # a shortcut that needs its own
    finally:
        stop = True
        await asyncio.gather(*hammers)
        await pool.close(timeout=5)


# -- abandoned statements stop on the server (item 6) ------------------------------


async def test_cancelled_shortcuts_queued_behind_others_stop_on_the_server(
    pg_dsn: str, admin_sql: AdminSql
) -> None:
    app = f"share-cancel-{uuid.uuid4().hex[:8]}"
    pool = await agentdb.create_pool(
        pg_dsn, pool_size=7, max_overflow=0, min_size=7, application_name=app
    )
    try:
        await asyncio.gather(*(pool.fetchval("SELECT pg_sleep(30)", timeout=0.5) for _ in range(7)),
                             return_exceptions=True)
        await asyncio.sleep(0.3)
        tasks = [asyncio.ensure_future(pool.fetchval("SELECT pg_sleep(30)")) for _ in range(30)]
        for _ in range(100):
            if await active_backends(admin_sql, pg_dsn, app, "SELECT pg_sleep(30)%") == 7:
                break
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        remaining = -1
        for _ in range(100):  # far less than pg_sleep(30): cancelled, not finished
            remaining = await active_backends(admin_sql, pg_dsn, app, "SELECT pg_sleep(30)%")
            if remaining == 0:
                break
            await asyncio.sleep(0.1)
        assert remaining == 0
        assert await pool.fetchval("SELECT 42") == 42
    finally:
        await pool.close(timeout=5)


async def test_abandoned_statements_on_a_held_connection_all_stop(
    pg_dsn: str, admin_sql: AdminSql
) -> None:
    app = f"share-held-{uuid.uuid4().hex[:8]}"
    conn = await agentdb.connect(pg_dsn, application_name=app)
    try:
        tasks = [asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)")) for _ in range(4)]
        for _ in range(100):
            if await active_backends(admin_sql, pg_dsn, app, "SELECT pg_sleep(30)%") == 1:
                break
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # The next statement waits for them to be gone, and is never hit by their cancels.
        assert await conn.fetchval("SELECT 7 FROM pg_sleep(0.2)") == 7
        assert await active_backends(admin_sql, pg_dsn, app, "SELECT pg_sleep(30)%") == 0
    finally:
        await conn.close()


async def test_a_statement_sent_after_abandoned_ones_is_never_cancelled(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    try:
        for i in range(25):
            tasks = [
                asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(0.05 * $1)", float(n)))
                for n in range(1, 4)
            ]
            await asyncio.sleep(0.01 * (i % 5))
            for t in tasks:
                t.cancel()
            assert await conn.fetchval("SELECT $1::int FROM pg_sleep(0.01)", i) == i
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await conn.close()


async def test_a_connection_whose_statements_are_all_abandoned_takes_no_new_ones(
    pool5: agentdb.Pool,
) -> None:
    await share_all(pool5)
    task = asyncio.ensure_future(pool5.fetchval("SELECT pg_sleep(30)"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Whatever connection each lands on, none is cancelled by the abandoned one's cancel.
    results = await asyncio.gather(*(pool5.fetchval("SELECT $1::int", i) for i in range(50)))
    assert results == list(range(50))
