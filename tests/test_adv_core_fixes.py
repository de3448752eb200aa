"""Core bugs the adversity suite found, each now fixed in src/ and kept as a regression test.

Each docstring says what went wrong and where; the fix is in the commit that moved the test
here.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import agentdb


async def test_failed_connects_are_not_retried_in_a_hot_loop() -> None:
    """Three callers at once against a port that refuses: each should get the connect
    error promptly (or, while waiting for a checked-out connection, a PoolTimeout that
    names the connect error), and the pool should not hammer the server.

    Today: all three wait the full pool_timeout and get a PoolTimeout saying "the pool is
    exhausted", while the pool makes ~10,000 connect attempts per second (stats
    connect_errors ~ 19,000 in 2 s). Diagnosis: src/pool.c pool_on_opened() fails a waiter
    only when ``in_use + shared + resetting + opening == 0``; with several connects in
    flight each failure sees the others' ``opening`` and fails nobody, then pool_grow()
    starts a new connect at once (no backoff), so ``opening`` never reaches 0 while
    waiters remain. Same loop with connections checked out (a role's CONNECTION LIMIT, or
    max_connections reached: ~280 attempts/s).
    """
    pool = await agentdb.create_pool(
        "postgresql://u@127.0.0.1:1/x", pool_size=2, max_overflow=1, pool_timeout=2,
        min_size=0, timeout=2,
    )
    try:
        start = time.monotonic()
        outs = await asyncio.gather(
            *(pool.fetchval("SELECT 1") for _ in range(3)), return_exceptions=True
        )
        elapsed = time.monotonic() - start
        assert all(isinstance(o, agentdb.OperationalError) for o in outs), outs
        assert elapsed < 1.0, elapsed
        assert pool.stats()["connect_errors"] <= 20, pool.stats()["connect_errors"]
    finally:
        await pool.close(timeout=5)


async def _active(admin_sql: Any, dsn: str, app: str) -> int:
    rows = await asyncio.to_thread(
        admin_sql, dsn,
        f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' "
        "AND state = 'active'",
    )
    return int(rows[0][0])


async def test_close_cancels_the_in_flight_statement_on_the_server(
    pg_dsn: str, admin_sql: Any
) -> None:
    """close(timeout), terminate() and Pool.close(timeout) with a statement running: the
    caller gets InterfaceError at once (fine), but the statement keeps running on the
    server: a ``pg_sleep(30)`` backend stays 'active' for 30 s (a runaway query keeps its
    locks and CPU until it ends; the server notices the dead socket only when it next
    writes, as client_connection_check_interval is 0 by default).

    Diagnosis: src/connection.c agentdb_connection_close_now()/conn_release_pg() fail
    the pending ops and PQfinish() the connection without a cancel request; close()
    with a timeout does not wait for (or cancel) the in-flight statement either. Fix:
    when ops are pending, fire the non-blocking cancel (as the statement timeout does)
    before closing the socket, bounded by cancel_grace.
    """
    for how in ("close", "terminate", "pool.close"):
        app = f"adv_pending_close_{os.getpid()}"
        if how == "pool.close":
            p = await agentdb.create_pool(pg_dsn, application_name=app, min_size=1)
            fut = asyncio.ensure_future(p.fetchval("SELECT pg_sleep(30)"))
        else:
            c = await agentdb.connect(pg_dsn, application_name=app)
            fut = asyncio.ensure_future(c.fetchval("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.3)
        assert await _active(admin_sql, pg_dsn, app) == 1
        if how == "close":
            await c.close(timeout=1)
        elif how == "terminate":
            c.terminate()
        else:
            await p.close(timeout=1)
        try:
            await fut
        except agentdb.InterfaceError:
            pass
        deadline = time.monotonic() + 3
        while await _active(admin_sql, pg_dsn, app) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await _active(admin_sql, pg_dsn, app) == 0, f"{how}: the query still runs"


async def test_child_closing_inherited_connections(pg_dsn: str) -> None:
    """A forked child that closes what it inherited (``pool.terminate()`` or
    ``conn.terminate()``, or drops them and runs the GC while its copy of the loop is
    open) must leave the parent's connections working.

    Today the parent's next statement on those connections hangs forever (asyncio and
    uvloop alike). Diagnosis: conn_release_pg() rightly skips PQfinish() in a child, but
    agentdb_connection_close_now() still removes the socket's reader from the event loop;
    the child's loop shares the parent's epoll instance (inherited across fork), so
    EPOLL_CTL_DEL removes the parent's registration and the parent never hears the reply.
    Fix: when ``c->pid != getpid()``, touch neither the loop nor the socket: just forget
    them (the same for the pool's timers).
    """
    p = await agentdb.create_pool(pg_dsn, pool_size=2, min_size=2)
    try:
        held = await p.acquire()
        pid = os.fork()
        if pid == 0:
            try:
                p.terminate()
                held.terminate()
            finally:
                os._exit(0)
        await asyncio.to_thread(os.waitpid, pid, 0)
        assert await asyncio.wait_for(held.fetchval("SELECT 1"), 3) == 1
        assert await asyncio.wait_for(p.fetchval("SELECT 2"), 3) == 2
        await p.release(held)
    finally:
        p.terminate()


async def test_pgbouncer_prepared_statement_error_says_what_to_do(pg_dsn: str) -> None:
    """Behind PgBouncer in transaction mode with the default statement cache, users get
    ``InvalidSqlStatementName: prepared statement "__adb_..." does not exist`` (26000;
    also 42P05 "already exists"), hint None: nothing says what to do.

    Wanted (as asyncpg does): the error's hint (or message) names the cause and the fix:
    a transaction/statement-mode pooler; use ``statement_cache_size=0``. The pooler is
    made to move a statement deterministically: another client holds, in a transaction,
    the server connection the statement was prepared on, so the next two executions
    (pipelined: the first cannot be prepared again transparently) run on another.
    """
    from urllib.parse import urlsplit

    from faults.pgbouncer import PgBouncer

    parts = urlsplit(pg_dsn)
    b = PgBouncer(parts.hostname or "127.0.0.1", parts.port or 5432, pool_size=2).start()
    sql = "SELECT $1::int + 1"
    try:
        url = b.url(parts.path.lstrip("/"))
        conn = await agentdb.connect(url)  # the statement cache on, as by default
        holder = await agentdb.connect(url, statement_cache_size=0)
        errs: list[BaseException] = []
        for _ in range(20):
            assert await conn.fetchval(sql, 1) == 2  # prepared on some server connection
            server = await conn.fetchval("SELECT pg_backend_pid()")
            await holder.execute("BEGIN")
            if await holder.fetchval("SELECT pg_backend_pid()") != server:
                await holder.execute("ROLLBACK")  # it took the other one: again
                continue
            outs = await asyncio.gather(
                conn.fetchval(sql, 2), conn.fetchval(sql, 3), return_exceptions=True
            )
            await holder.execute("ROLLBACK")
            errs = [o for o in outs if isinstance(o, BaseException)]
            break
        await conn.close()
        await holder.close()
        assert errs, "the pooler never moved the statement to another server connection"
        for e in errs:
            text = f"{e} {getattr(e, 'hint', '') or ''}"
            assert "statement_cache_size" in text, text
    finally:
        b.stop()
