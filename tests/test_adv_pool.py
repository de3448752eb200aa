"""Adversity on one server that behaves: races, COPY, close with users, shared
connections, fork, huge results and notice floods (scenarios 3, 9, 14, 16, 17, 18)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
from typing import Any

import pytest
from faults.checks import Timer, assert_backends, assert_clean, settle

import agentdb
from agentdb import errors

APP = f"adv_pool_{os.getpid()}"  # unique: concurrent runs share the server


@pytest.fixture
async def pool(pg_dsn: str) -> Any:
    p = await agentdb.create_pool(
        pg_dsn, pool_size=3, max_overflow=2, pool_timeout=5, application_name=APP
    )
    try:
        yield p
    finally:
        await p.close(timeout=5)


async def test_handed_over_while_cancelled_race_many_times(
    pg_dsn: str, admin_sql: Any
) -> None:
    """Scenario 3: a connection handed to a waiter at the moment the waiter is cancelled
    or times out, 300 times with every interleaving: none is lost, FIFO holds."""
    p = await agentdb.create_pool(
        pg_dsn, pool_size=1, max_overflow=0, pool_timeout=5, application_name=APP
    )
    rng = random.Random(5)
    try:
        for i in range(300):
            held = await p.acquire()
            w = asyncio.ensure_future(p.acquire(timeout=5 if i % 3 else 0.002))
            behind = asyncio.ensure_future(p.acquire(timeout=5))  # must be served next
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            release = p.release(held)
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            w.cancel()
            got: Any = None
            try:
                got = await w
            except (asyncio.CancelledError, agentdb.PoolTimeout):
                pass
            if got is not None:  # served before the cancel landed: it is ours to give back
                await p.release(got)
            c = await asyncio.wait_for(behind, 5)  # served: the handed-over one came back
            await p.release(c)
            await release
        await settle(p)
        s = p.stats()
        assert s["size"] == 1 and s["idle"] == 1, s
        with Timer() as t:
            assert await p.fetchval("SELECT 1", timeout=2) == 1
        assert t.elapsed < 1
        await assert_clean(p, admin_sql, pg_dsn, APP)
    finally:
        await p.close(timeout=5)


async def test_copy_is_refused_clearly_and_the_connection_stays_usable(
    pool: agentdb.Pool, pg_dsn: str, admin_sql: Any
) -> None:
    """Scenario 9 (mid-COPY) and 16 (a COPY among pipelined statements): COPY is not
    supported by these calls: a clear NotSupportedError, the others unaffected."""
    async with pool.acquire() as c:
        await c.execute("CREATE TEMP TABLE adv_copy (v int)")
        with pytest.raises(agentdb.NotSupportedError, match="COPY TO STDOUT"):
            await c.execute("COPY (SELECT generate_series(1, 100000)) TO STDOUT")
        assert await c.fetchval("SELECT 1") == 1
        with pytest.raises(agentdb.NotSupportedError, match="COPY FROM STDIN"):
            await c.execute("COPY adv_copy FROM STDIN")
        assert await c.fetchval("SELECT count(*) FROM adv_copy") == 0
        # pipelined with other statements: each gets its own answer
        outs = await asyncio.gather(
            c.fetchval("SELECT 1"),
            c.execute("COPY (SELECT 1) TO STDOUT"),
            c.fetchval("SELECT 2"),
            c.execute("COPY adv_copy FROM STDIN"),
            c.fetchval("SELECT 3"),
            return_exceptions=True,
        )
        assert outs[0] == 1 and outs[2] == 2 and outs[4] == 3, outs
        assert isinstance(outs[1], agentdb.NotSupportedError)
        assert isinstance(outs[3], agentdb.NotSupportedError)
        # inside a transaction: the COPY error aborts it; released dirty -> rolled back
        await c.execute("BEGIN")
        with pytest.raises(agentdb.NotSupportedError):
            await c.execute("COPY adv_copy FROM STDIN")
        pid = c.get_backend_pid()
    await settle(pool)
    async with pool.acquire() as c:
        # the rollback travels ahead of this user's first statement (not awaited)
        assert not c.is_in_transaction()
        assert await c.fetchval("SELECT 1") == 1
        assert c.get_transaction_status() == "idle"
        if c.get_backend_pid() == pid:
            assert await c.fetchval("SELECT 1") == 1
    await assert_clean(pool, admin_sql, pg_dsn, APP)


async def test_pool_closed_with_busy_holders_shortcuts_and_waiters(
    pg_dsn: str, admin_sql: Any
) -> None:
    """Scenario 14: close(timeout) while connections are checked out (idle and mid-query),
    shortcut queries run and waiters queue: waiters fail at once with InterfaceError,
    a holder that gives back in time closes cleanly, the rest are terminated at the
    timeout; nothing hangs, no backend stays."""
    p = await agentdb.create_pool(
        pg_dsn, pool_size=3, max_overflow=0, pool_timeout=10, application_name=APP
    )
    quick = await p.acquire()
    slow = await p.acquire()
    # (2 s: short statements; terminate() also cancels them on the server, see
    # tests/test_adv_core_fixes.py::test_close_cancels_the_in_flight_statement_on_the_server.)
    busy_q = asyncio.ensure_future(slow.fetchval("SELECT pg_sleep(2)"))
    shortcut = asyncio.ensure_future(p.fetchval("SELECT pg_sleep(2)"))
    await asyncio.sleep(0.1)
    waiters = [asyncio.ensure_future(p.acquire()) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert p.stats()["waiting"] == 5
    with Timer() as t:
        closing = asyncio.ensure_future(p.close(timeout=1.0))
        for w in waiters:
            with pytest.raises(agentdb.InterfaceError, match="clos"):
                await asyncio.wait_for(w, 2)
        assert t.elapsed < 0.5  # at once, not at the timeout
        await p.release(quick)  # given back in time: closed cleanly
        assert quick.is_closed()
        await asyncio.wait_for(closing, 5)
    assert 0.9 <= t.elapsed < 1.0 + 1.5, t.elapsed
    for fut in (busy_q, shortcut):
        with pytest.raises((agentdb.InterfaceError, agentdb.OperationalError)):
            await asyncio.wait_for(fut, 5)
    assert slow.is_closed()
    with pytest.raises(agentdb.InterfaceError):
        await p.acquire()
    await p.release(slow)  # harmless after close
    assert p.stats()["size"] == 0
    # the pg_sleep backends end and see the closed socket
    await assert_backends(admin_sql, pg_dsn, APP, at_most=0, timeout=10)


async def test_terminate_with_queries_in_flight(pg_dsn: str, admin_sql: Any) -> None:
    p = await agentdb.create_pool(pg_dsn, pool_size=2, application_name=APP)
    held = await p.acquire()
    inflight = [asyncio.ensure_future(p.fetchval("SELECT pg_sleep(2)")) for _ in range(3)]
    await asyncio.sleep(0.1)
    with Timer() as t:
        p.terminate()
        outs = await asyncio.wait_for(asyncio.gather(*inflight, return_exceptions=True), 5)
    assert t.elapsed < 1.5
    assert all(isinstance(o, (agentdb.InterfaceError, agentdb.OperationalError)) for o in outs)
    assert held.is_closed()
    await assert_backends(admin_sql, pg_dsn, APP, at_most=0, timeout=10)


async def test_many_tasks_on_one_connection_never_mix_results(
    conn: agentdb.Connection,
) -> None:
    """Scenario 16: 600 tasks pipelined on one connection, a mix of shapes, server
    errors and bad parameters: each gets exactly its own answer."""
    rng = random.Random(16)

    async def one(i: int) -> tuple[int, Any]:
        kind = rng.randrange(5)
        try:
            if kind == 0:
                return i, await conn.fetchval("SELECT $1::int", i)
            if kind == 1:
                rows = await conn.fetch("SELECT $1::int + g FROM generate_series(0, 2) g", i)
                return i, [r[0] for r in rows]
            if kind == 2:
                return i, await conn.fetchval("SELECT $1::int / 0", i)
            if kind == 3:
                return i, await conn.fetchval("SELECT $1::int", f"x{i}")
            row = await conn.fetchrow("SELECT $1::text AS t, $2::int AS n", str(i), i)
            assert row is not None
            return i, (row["t"], row["n"])
        except (errors.DivisionByZero, agentdb.DataError) as e:
            return i, type(e)

    kinds = {}
    rng_copy = random.Random(16)
    for i in range(600):
        kinds[i] = rng_copy.randrange(5)
    outs = await asyncio.gather(*(one(i) for i in range(600)))
    for i, got in outs:
        expected: Any = {
            0: i,
            1: [i, i + 1, i + 2],
            2: errors.DivisionByZero,
            3: agentdb.DataError,
            4: (str(i), i),
        }[kinds[i]]
        assert got == expected, (i, got, expected)
    assert await conn.fetchval("SELECT 'still fine'") == "still fine"


async def test_tasks_on_a_connection_that_closes(pg_dsn: str) -> None:
    """Scenario 16: statements queued on a connection closed under them, and statements
    issued after: a clear InterfaceError each, none hangs."""
    c = await agentdb.connect(pg_dsn)
    queued = [asyncio.ensure_future(c.fetchval("SELECT pg_sleep(0.05)")) for _ in range(20)]
    await asyncio.sleep(0.01)
    with Timer() as t:
        await c.close(timeout=0.2)
        outs = await asyncio.wait_for(asyncio.gather(*queued, return_exceptions=True), 5)
    assert t.elapsed < 0.2 + 1.5
    assert all(
        o is None or isinstance(o, (agentdb.InterfaceError, agentdb.OperationalError))
        for o in outs
    ), outs
    assert any(isinstance(o, agentdb.InterfaceError) for o in outs)
    for _ in range(3):
        with pytest.raises(agentdb.InterfaceError, match="closed"):
            await c.fetchval("SELECT 1")


def _child_report(w: int, report: dict[str, Any]) -> None:
    os.write(w, json.dumps(report).encode())
    os.close(w)
    os._exit(0)


async def test_fork_after_the_pool_exists(pg_dsn: str, admin_sql: Any) -> None:
    """Scenario 17: a forked child that tries to use the pool and a checked-out
    connection gets a clear InterfaceError and never touches the parent's sessions; after
    it exits, the parent's pooled connections still work (same backends).

    (A child that *closes* inherited connections leaves the parent's alone: see
    tests/test_adv_core_fixes.py::test_child_closing_inherited_connections.)
    """
    p = await agentdb.create_pool(
        pg_dsn, pool_size=3, max_overflow=0, min_size=3, application_name=APP
    )
    try:
        held = await p.acquire()
        before = {r[0] for r in await asyncio.to_thread(
            admin_sql, pg_dsn,
            f"SELECT pid FROM pg_stat_activity WHERE application_name = '{APP}'")}
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: must not use or close the parent's sessions
            report: dict[str, Any] = {}
            try:
                async def use_conn() -> Any:
                    return await held.fetchval("SELECT 1")

                async def use_pool() -> Any:
                    return await p.fetchval("SELECT 1")

                for name, use in (("conn", use_conn), ("pool", use_pool)):
                    try:
                        asyncio.run(use())
                        report[name] = "used!"
                    except agentdb.InterfaceError as e:
                        report[name] = f"InterfaceError: {e}"
                    except BaseException as e:  # noqa: BLE001
                        report[name] = f"{type(e).__name__}: {e}"
            finally:
                _child_report(w, report)
        os.close(w)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        with os.fdopen(r) as f:
            report = json.loads(f.read() or "{}")
        assert status == 0
        assert report["conn"].startswith("InterfaceError"), report
        assert report["pool"].startswith("InterfaceError"), report
        with Timer() as t:
            assert await held.fetchval("SELECT 1", timeout=5) == 1
            got = await asyncio.gather(
                *(p.fetchval("SELECT pg_backend_pid()", timeout=5) for _ in range(4))
            )
        assert t.elapsed < 2
        await p.release(held)
        assert {str(g) for g in got} <= before
        assert p.stats()["lost"] == 0
        await assert_clean(p, admin_sql, pg_dsn, APP)
    finally:
        await p.close(timeout=5)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def test_huge_result(conn: agentdb.Connection) -> None:
    """Scenario 18: 2,000,000 rows in one fetch, twice: no crash; memory is the rows'
    (~170 B per 2-column row: the PGresult, then the Records) and a second fetch reuses
    what the first one freed (the allocator keeps it: RSS stays, it does not grow)."""
    import gc

    sql = "SELECT g, 'x' FROM generate_series(1, 2000000) g"
    gc.collect()
    base = _rss_kib()
    peaks = []
    for _ in range(2):
        with Timer() as t:
            rows = await conn.fetch(sql, timeout=120)
        peaks.append(_rss_kib())
        assert len(rows) == 2_000_000 and rows[-1][0] == 2_000_000 and rows[0][1] == "x"
        del rows
        gc.collect()
    first, second = (peaks[0] - base) / 1024, (peaks[1] - base) / 1024
    print(f"huge result: {t.elapsed:.2f}s per fetch, RSS +{first:.0f} MiB after the first, "
          f"+{second:.0f} MiB after the second")
    assert first < 1024
    assert second < first * 1.25 + 16, (first, second)  # flat: nothing kept per fetch
    assert await conn.fetchval("SELECT 1") == 1


async def test_notice_flood(conn: agentdb.Connection) -> None:
    """Scenario 18: 100,000 NOTICEs from one statement: no crash, memory flat,
    the loop stays responsive, the connection usable."""
    flood = (
        "DO $$ BEGIN FOR i IN 1..100000 LOOP RAISE NOTICE 'notice %', i; END LOOP; END $$"
    )
    await conn.execute(flood.replace("100000", "1000"))  # warm up
    base = _rss_kib()
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.01)

    tick = asyncio.ensure_future(ticker())
    with Timer() as t:
        assert await conn.execute(flood, timeout=60) == "DO"
    stop = True
    await tick
    grown = _rss_kib() - base
    print(f"notice flood: {t.elapsed:.2f}s, RSS +{grown} KiB, {ticks} ticks")
    assert grown < 50_000, grown
    assert ticks >= 1
    assert await conn.fetchval("SELECT 2") == 2
