"""Pool: sizing, FIFO waiters, timeouts, clean hand-outs, shortcuts, cancellation, close."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

import agentdb


def backends(admin_sql: Any, dsn: str, app: str) -> list[tuple[str, ...]]:
    return admin_sql(
        dsn, f"SELECT pid, state FROM pg_stat_activity WHERE application_name = '{app}'"
    )


def assert_all_idle(pool: agentdb.Pool) -> None:
    s = pool.stats()
    assert s["in_use"] == 0 and s["shared"] == 0 and s["resetting"] == 0, s
    assert s["waiting"] == 0 and s["opening"] == 0, s
    assert s["idle"] == s["size"], s


async def settle(pool: agentdb.Pool) -> None:
    for _ in range(100):
        s = pool.stats()
        if s["resetting"] == 0 and s["shared"] == 0 and s["opening"] == 0:
            return
        await asyncio.sleep(0.01)


@pytest.fixture
async def pool(pg_dsn: str) -> Any:
    p = await agentdb.create_pool(
        pg_dsn, pool_size=3, max_overflow=2, pool_timeout=0.5, application_name="pooltest"
    )
    try:
        yield p
    finally:
        await p.close(timeout=5)


async def test_acquire_release_and_context(pool: agentdb.Pool) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1
        assert pool.stats()["in_use"] == 1
    assert pool.stats()["in_use"] == 0
    conn = await pool.acquire()
    await pool.release(conn)
    with pytest.raises(agentdb.InterfaceError, match="already released"):
        await pool.release(conn)
    assert_all_idle(pool)


async def test_exhausted_pool_times_out_on_time(pool: agentdb.Pool) -> None:
    held = [await pool.acquire() for _ in range(5)]  # 3 + 2 overflow
    assert pool.stats()["size"] == 5 and pool.stats()["overflow"] == 2
    start = time.monotonic()
    with pytest.raises(agentdb.PoolTimeout):
        await pool.acquire()
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 1.0
    assert isinstance(agentdb.PoolTimeout("x"), TimeoutError)
    start = time.monotonic()
    with pytest.raises(agentdb.PoolTimeout):
        await pool.acquire(timeout=0.1)
    assert time.monotonic() - start < 0.4
    for c in held:
        await pool.release(c)
    await settle(pool)
    # Overflow connections closed on return: pool_size stay idle.
    assert pool.stats()["size"] == 3 and pool.stats()["timeouts"] == 2
    assert_all_idle(pool)


async def test_never_more_than_pool_size_plus_overflow(
    pool: agentdb.Pool, pg_dsn: str, admin_sql: Any
) -> None:
    peak = 0

    async def work() -> None:
        nonlocal peak
        async with pool.acquire(timeout=10) as conn:
            peak = max(peak, pool.stats()["size"])
            await conn.execute("SELECT pg_sleep(0.02)")

    await asyncio.gather(*(work() for _ in range(40)))
    assert peak <= 5
    assert len(backends(admin_sql, pg_dsn, "pooltest")) <= 5
    await settle(pool)
    assert_all_idle(pool)


async def test_waiters_are_served_first_come_first_served(pool: agentdb.Pool) -> None:
    held = [await pool.acquire() for _ in range(5)]
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with pool.acquire(timeout=5):
            order.append(i)

    tasks = []
    for i in range(8):
        tasks.append(asyncio.ensure_future(waiter(i)))
        await asyncio.sleep(0.005)
    assert pool.stats()["waiting"] == 8
    for c in held:
        await pool.release(c)
    await asyncio.gather(*tasks)
    assert order == list(range(8))


async def test_cancelled_waiter_costs_no_connection(pool: agentdb.Pool) -> None:
    held = [await pool.acquire() for _ in range(5)]
    t = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0.01)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert pool.stats()["waiting"] == 0
    # The race: a connection handed over just as the waiter is cancelled.
    t2 = asyncio.ensure_future(pool.acquire(timeout=5))
    await asyncio.sleep(0.01)
    await pool.release(held.pop())  # resolves t2's future
    t2.cancel()  # before t2 ran: the connection must come back
    with pytest.raises(asyncio.CancelledError):
        await t2
    for c in held:
        await pool.release(c)
    await settle(pool)
    assert_all_idle(pool)


async def test_released_dirty_connections_are_cleaned(
    pool: agentdb.Pool, pg_dsn: str, admin_sql: Any
) -> None:
    conn = await pool.acquire()
    await conn.execute("BEGIN")
    await conn.execute("CREATE TEMP TABLE d (v int)")
    await pool.release(conn)  # open transaction: rolled back
    conn = await pool.acquire()
    await conn.execute("BEGIN")
    with pytest.raises(agentdb.DatabaseError):
        await conn.execute("SELECT 1/0")
    await pool.release(conn)  # failed transaction: rolled back
    conn = await pool.acquire()
    busy = asyncio.ensure_future(conn.execute("SELECT pg_sleep(0.2)"))
    await asyncio.sleep(0.01)
    await pool.release(conn)  # busy: drained first
    await busy
    await settle(pool)
    for _ in range(3):
        async with pool.acquire() as c:
            # a rollback due travels ahead of this user's first statement (not awaited)
            assert not c.is_in_transaction()
            assert await c.fetchval("SELECT 1") == 1
            assert c.get_transaction_status() == "idle"
    states = [s for _, s in backends(admin_sql, pg_dsn, "pooltest")]
    assert "idle in transaction" not in states and "idle in transaction (aborted)" not in states
    assert pool.stats()["rollbacks"] >= 2
    assert_all_idle(pool)


async def test_killed_idle_backend_is_replaced_without_error(
    pool: agentdb.Pool, pg_dsn: str, admin_sql: Any
) -> None:
    async with pool.acquire() as c:
        pid = c.get_backend_pid()
    admin_sql(pg_dsn, f"SELECT pg_terminate_backend({pid})")
    await asyncio.sleep(0.2)
    for _ in range(5):
        async with pool.acquire() as c:
            assert await c.fetchval("SELECT 1") == 1
            assert c.get_backend_pid() != pid
    assert pool.stats()["lost"] >= 1


async def test_killed_busy_backend_frees_the_slot(
    pool: agentdb.Pool, pg_dsn: str, admin_sql: Any
) -> None:
    async with pool.acquire() as c:
        pid = c.get_backend_pid()
        task = asyncio.ensure_future(c.fetchval("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.2)
        admin_sql(pg_dsn, f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(agentdb.OperationalError):
            await task
    await settle(pool)
    assert_all_idle(pool)
    assert await pool.fetchval("SELECT 1") == 1


async def test_recycle_and_max_idle(pg_dsn: str) -> None:
    p = await agentdb.create_pool(pg_dsn, pool_size=2, pool_recycle=0.3, max_idle=10)
    try:
        async with p.acquire() as c:
            pid = c.get_backend_pid()
        await asyncio.sleep(0.5)
        async with p.acquire() as c:
            assert c.get_backend_pid() != pid
        assert p.stats()["recycled"] >= 1
    finally:
        await p.close()
    p = await agentdb.create_pool(pg_dsn, pool_size=2, max_idle=0.2, min_size=2)
    try:
        assert p.stats()["idle"] == 2
        await asyncio.sleep(0.6)  # never used: they expire too
        assert p.stats()["size"] == 0 and p.stats()["expired"] == 2
        assert await p.fetchval("SELECT 3") == 3
    finally:
        await p.close()


async def test_pre_ping_after_idle_threshold(pg_dsn: str) -> None:
    p = await agentdb.create_pool(pg_dsn, pool_size=2, ping_after=0.1)
    try:
        await asyncio.sleep(0.2)
        async with p.acquire() as c:
            assert await c.fetchval("SELECT 1") == 1
        assert p.stats()["pings"] == 1
        async with p.acquire() as c:  # just used: no ping
            pass
        assert p.stats()["pings"] == 1
    finally:
        await p.close()


async def test_shortcuts(pool: agentdb.Pool) -> None:
    assert await pool.fetchval("SELECT $1::int * 2", 21) == 42
    row = await pool.fetchrow("SELECT 1 AS a, 'b' AS b")
    assert row is not None and row["b"] == "b"
    assert len(await pool.fetch("SELECT generate_series(1, 10)")) == 10
    assert await pool.execute("SELECT 1") == "SELECT 1"
    await pool.execute("CREATE TABLE IF NOT EXISTS pool_em (v int)")
    await pool.execute("TRUNCATE pool_em")
    await pool.executemany("INSERT INTO pool_em VALUES ($1)", [(1,), (2,)])
    assert await pool.fetchval("SELECT sum(v) FROM pool_em") == 3
    await pool.execute("DROP TABLE pool_em")
    results = await asyncio.gather(*(pool.fetchval("SELECT $1::int", i) for i in range(500)))
    assert results == list(range(500))
    assert pool.stats()["size"] <= 5
    with pytest.raises(agentdb.DatabaseError):
        await pool.fetchval("SELECT 1/0")
    await settle(pool)
    assert_all_idle(pool)


async def test_task_cancelled_during_acquire_use_and_release_leaks_nothing(
    pool: agentdb.Pool, pg_dsn: str, admin_sql: Any
) -> None:
    async def user(delay: float) -> None:
        async with pool.acquire(timeout=5) as c:
            async with c.transaction():
                await c.execute("SELECT pg_sleep($1)", delay)

    for i in range(30):
        t = asyncio.ensure_future(user(0.05))
        await asyncio.sleep(0.002 * (i % 10))
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
    await asyncio.sleep(0.3)
    await settle(pool)
    assert_all_idle(pool)
    assert len(backends(admin_sql, pg_dsn, "pooltest")) <= 5
    states = [s for _, s in backends(admin_sql, pg_dsn, "pooltest")]
    assert all(s == "idle" for s in states), states


async def test_close_with_checked_out_connections_and_waiters(pg_dsn: str) -> None:
    p = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0, pool_timeout=10)
    held = await p.acquire()
    waiter = asyncio.ensure_future(p.acquire())
    await asyncio.sleep(0.01)
    start = time.monotonic()
    closing = asyncio.ensure_future(p.close(timeout=0.3))
    with pytest.raises(agentdb.InterfaceError, match="closing"):
        await waiter
    await closing
    assert time.monotonic() - start < 1.0
    assert held.is_closed()  # terminated after the timeout
    with pytest.raises(agentdb.InterfaceError, match="closed"):
        await p.fetchval("SELECT 1")
    await p.release(held)  # harmless after close
    assert p.stats()["size"] == 0


async def test_close_waits_for_release(pg_dsn: str) -> None:
    p = await agentdb.create_pool(pg_dsn, pool_size=2)
    held = await p.acquire()

    async def give_back() -> None:
        await asyncio.sleep(0.1)
        await p.release(held)

    asyncio.ensure_future(give_back())
    await p.close(timeout=5)
    assert p.stats()["size"] == 0


async def test_create_pool_fails_fast_when_server_unreachable() -> None:
    start = time.monotonic()
    with pytest.raises(agentdb.OperationalError):
        await agentdb.create_pool("postgresql://postgres@127.0.0.1:1/x", timeout=2)
    assert time.monotonic() - start < 2.5


async def test_garbage_collected_checked_out_connection(pool: agentdb.Pool) -> None:
    conn = await pool.acquire()
    await asyncio.sleep(0)
    with pytest.warns(ResourceWarning):
        del conn
        gc.collect()
    await settle(pool)
    s = pool.stats()
    assert s["in_use"] == 0 and s["leaked"] == 1
    assert await pool.fetchval("SELECT 1") == 1


async def test_leak_check_many_queries_through_the_pool(pool: agentdb.Pool) -> None:
    async def run(n: int) -> None:
        async def worker() -> None:
            for _ in range(n):
                await pool.fetchval("SELECT 1")
                async with pool.acquire() as c:
                    await c.fetchrow("SELECT 1 AS a, 'x' AS b")

        await asyncio.gather(*(worker() for _ in range(10)))

    import resource

    def objects() -> int:
        gc.collect()
        return len(gc.get_objects())

    await run(300)  # warm up caches, free lists and the statement cache
    counts = [objects()]
    rss = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]
    for _ in range(3):
        await run(700)  # 14k statements each
        counts.append(objects())
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    # Flat: a leak of one object per statement would add 28k between the first and the
    # last measurement; allow a few hundred for bounded caches and the test tooling.
    assert counts[3] - counts[1] < 1000, counts
    assert rss[3] - rss[1] < 10_000, rss  # KiB
    await settle(pool)
    assert_all_idle(pool)


async def test_close_does_not_wait_for_connects_that_never_finish() -> None:
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)  # never answers
    port = srv.getsockname()[1]
    try:
        p = await agentdb.create_pool(
            f"postgresql://u@127.0.0.1:{port}/db", min_size=0, timeout=30, pool_timeout=30
        )
        waiter = asyncio.ensure_future(p.fetchval("SELECT 1"))
        await asyncio.sleep(0.1)
        assert p.stats()["opening"] == 1
        start = time.monotonic()
        await p.close(timeout=10)
        assert time.monotonic() - start < 1.0
        with pytest.raises(agentdb.InterfaceError):
            await waiter
        assert p.stats()["size"] == 0
    finally:
        srv.close()


async def test_cancelled_queries_are_counted(pool: agentdb.Pool) -> None:
    async with pool.acquire() as c:
        with pytest.raises(TimeoutError):
            await c.fetchval("SELECT pg_sleep(5)", timeout=0.1)
        assert await c.fetchval("SELECT 1") == 1
    s = pool.stats()
    assert s["queries_cancelled"] == 1 and s["queries_cancelled_on_server"] == 1
