"""Adversity: the server itself misbehaves (the throwaway cluster: stop, restart, limits).

Scenarios 2 (overflow bounded when connects fail), 7 (restart while idle and busy),
8 (server down at start), 12 (connect failures: distinct, on time).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import pytest
from faults.checks import Timer, assert_backends, assert_clean, settle, wait_until

import agentdb

APP = f"adv_cluster_{os.getpid()}"  # unique: concurrent runs share the server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _expect(exc: Any, aw: Any, bound: float) -> tuple[BaseException, float]:
    """Await ``aw`` (bounded by ``bound`` + 5 s so a hang fails instead of blocking) and
    return the exception it raised and how long it took."""
    start = time.monotonic()
    with pytest.raises(exc) as info:
        await asyncio.wait_for(aw, bound + 5)
    return info.value, time.monotonic() - start


async def test_connect_failures_are_distinct_and_on_time(fault_cluster: Any) -> None:
    """Scenario 12: six ways a connect fails, each a clear, distinct error within
    ``timeout`` (+1.5 s). (The SQLSTATE of a server-side connect failure is not exposed by
    libpq: the errors differ by message, all OperationalError; see the report.)"""
    timeout = 2.0
    admin = await agentdb.connect(fault_cluster.dsn(), timeout=5)
    await admin.execute("DROP ROLE IF EXISTS adv_pw; CREATE ROLE adv_pw LOGIN PASSWORD 'right-pw'")
    await admin.close()
    fault_cluster.set_hba(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    port = fault_cluster.port
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)  # the kernel completes the handshake; nobody ever answers
    results: dict[str, tuple[BaseException, float]] = {}
    try:
        cases = {
            "never accepts": (TimeoutError, f"postgresql://u@127.0.0.1:{silent.getsockname()[1]}/x"),
            "closed port": (agentdb.OperationalError, f"postgresql://u@127.0.0.1:{_closed_port()}/x"),
            "no such name": (agentdb.OperationalError, "postgresql://u@no-such-host.invalid/x"),
            "wrong database": (
                agentdb.OperationalError, f"postgresql://postgres@127.0.0.1:{port}/no_such_db_adv"
            ),
            "wrong password": (
                agentdb.OperationalError, f"postgresql://adv_pw:wrong-pw@127.0.0.1:{port}/postgres"
            ),
        }
        for name, (exc, url) in cases.items():
            results[name] = await _expect(exc, agentdb.connect(url, timeout=timeout), timeout)
        # max_connections reached: a restart with a tiny limit.
        fault_cluster.settings.update(max_connections=3, superuser_reserved_connections=0)
        fault_cluster.restart()
        held = [await agentdb.connect(fault_cluster.dsn(), timeout=5) for _ in range(3)]
        try:
            results["max_connections"] = await _expect(
                agentdb.OperationalError,
                agentdb.connect(fault_cluster.dsn(), timeout=timeout),
                timeout,
            )
        finally:
            for c in held:
                await c.close()
    finally:
        silent.close()
        fault_cluster.settings.update(max_connections=100, superuser_reserved_connections=3)
        fault_cluster.restart()
    needles = {
        "never accepts": "timed out",
        "closed port": "Connection refused",
        "no such name": "could not translate host name",
        "wrong database": 'database "no_such_db_adv" does not exist',
        "wrong password": "password authentication failed",
        "max_connections": "too many clients",
    }
    for name, (exc, elapsed) in results.items():
        assert needles[name] in str(exc), (name, str(exc))
        assert "wrong-pw" not in str(exc) + repr(exc)
        assert elapsed < timeout + 1.5, (name, elapsed)
    assert results["never accepts"][1] >= timeout * 0.9  # not early either
    # distinct: no two failures read the same
    texts = [f"{type(e).__name__}: {e}" for e, _ in results.values()]
    assert len(set(texts)) == len(texts)


async def test_overflow_never_exceeds_max_overflow_when_connects_fail(
    fault_cluster: Any, admin_sql: Any
) -> None:
    """Scenario 2: connects refused by the server (a role's connection limit) and by a
    closed port: the pool never holds more than pool_size + max_overflow, every acquirer
    gets an answer within pool_timeout, and a failed connect frees its slot.

    (While connections are checked out, a waiter whose connect failed keeps waiting for
    them; the pool retries with a backoff: see
    tests/test_adv_core_fixes.py::test_failed_connects_are_not_retried_in_a_hot_loop.)
    """
    admin_dsn = fault_cluster.dsn()
    admin = await agentdb.connect(admin_dsn, timeout=5)
    await admin.execute("DROP ROLE IF EXISTS adv_lim; CREATE ROLE adv_lim LOGIN CONNECTION LIMIT 3")
    try:
        dsn = fault_cluster.dsn().replace("postgres@", "adv_lim@")
        pool = await agentdb.create_pool(
            dsn, pool_size=2, max_overflow=3, pool_timeout=2, application_name=APP, min_size=0,
            timeout=3,
        )
        peak = 0
        stop = False

        async def watch() -> None:
            nonlocal peak
            while not stop:
                peak = max(peak, pool.stats()["size"])
                await asyncio.sleep(0.001)

        watcher = asyncio.ensure_future(watch())
        held: list[Any] = []
        failures: list[tuple[BaseException, float]] = []

        async def grab() -> None:
            t0 = time.monotonic()
            try:
                held.append(await pool.acquire())
            except (agentdb.OperationalError, agentdb.PoolTimeout) as e:
                failures.append((e, time.monotonic() - t0))

        try:
            await asyncio.wait_for(asyncio.gather(*(grab() for _ in range(12))), 15)
            assert len(held) == 3 and len(failures) == 9, (len(held), failures[:1])
            for e, took in failures:
                assert took < 2 + 1.5, took
                if isinstance(e, agentdb.OperationalError):
                    assert "too many connections" in str(e)
            # connects still in flight when the last waiter gave up end within `timeout`
            assert await wait_until(lambda: pool.stats()["opening"] == 0, 3 + 1.5)
            s = pool.stats()
            assert s["size"] == 3 and s["in_use"] == 3, s
            assert s["connect_errors"] >= 1 and s["waiting"] == 0
            # The limit lifted: the failed connects' slots are free again (5 in all).
            await admin.execute("ALTER ROLE adv_lim CONNECTION LIMIT -1")
            held += [await pool.acquire(timeout=5) for _ in range(2)]
            assert pool.stats()["size"] == 5
            with pytest.raises(agentdb.PoolTimeout):
                await pool.acquire(timeout=0.2)
            for c in held:
                await pool.release(c)
            stop = True
            await watcher
            assert peak <= 5, peak
            await assert_clean(pool, admin_sql, admin_dsn, APP)
        finally:
            stop = True
            await pool.close(timeout=5)
    finally:
        await admin.close()
    await assert_backends(admin_sql, admin_dsn, APP, at_most=0)

    # A closed port: every caller gets an error within pool_timeout; no slot is ever kept,
    # and the pool backs off rather than retrying in a hot loop
    # (tests/test_adv_core_fixes.py::test_failed_connects_are_not_retried_in_a_hot_loop).
    pool = await agentdb.create_pool(
        f"postgresql://u@127.0.0.1:{_closed_port()}/x", pool_size=2, max_overflow=1,
        pool_timeout=2, min_size=0, timeout=2,
    )
    try:
        with Timer() as t:
            outs = await asyncio.wait_for(
                asyncio.gather(
                    *(pool.fetchval("SELECT 1") for _ in range(20)), return_exceptions=True
                ),
                10,
            )
        assert all(isinstance(o, (agentdb.OperationalError, agentdb.PoolTimeout)) for o in outs)
        assert t.elapsed < 2 + 1.5
        with Timer() as t:
            with pytest.raises(agentdb.OperationalError, match="Connection refused"):
                await pool.fetchval("SELECT 1")
        assert t.elapsed < 1.5
        s = pool.stats()
        assert s["size"] == 0 and s["opening"] == 0 and s["waiting"] == 0, s
        assert s["connect_errors"] >= 1
    finally:
        await pool.close(timeout=5)


OUTAGE_ERRORS = (
    agentdb.OperationalError, agentdb.PoolTimeout, TimeoutError, agentdb.InterfaceError
)


async def test_server_restarted_while_pool_idle(fault_cluster: Any, admin_sql: Any) -> None:
    """Scenario 7a: every pooled connection dies with the server; once it is back the
    next callers get live connections without an error. During the outage, callers get
    clear errors within pool_timeout."""
    dsn = fault_cluster.dsn()
    pool = await agentdb.create_pool(
        dsn, pool_size=3, max_overflow=2, pool_timeout=2, min_size=3, application_name=APP,
        timeout=2,
    )
    try:
        old = set()
        for c in [await pool.acquire() for _ in range(3)]:
            old.add(c.get_backend_pid())
            await pool.release(c)
        await asyncio.to_thread(fault_cluster.stop)
        assert await wait_until(lambda: pool.stats()["size"] == 0, 5), pool.stats()
        with Timer() as t:
            outs = await asyncio.gather(
                *(pool.fetchval("SELECT 1") for _ in range(5)), return_exceptions=True
            )
        assert all(isinstance(o, OUTAGE_ERRORS) for o in outs), outs
        assert t.elapsed < 2 + 1.5, t.elapsed
        await asyncio.to_thread(fault_cluster.start)
        with Timer() as t:
            got = await asyncio.gather(
                *(pool.fetchval("SELECT pg_backend_pid()") for _ in range(5))
            )
        assert not (set(got) & old)
        assert t.elapsed < 3
        assert pool.stats()["lost"] >= 3
        await assert_clean(pool, admin_sql, dsn, APP)
    finally:
        await pool.close(timeout=5)


async def test_server_restarted_while_pool_busy(fault_cluster: Any, admin_sql: Any) -> None:
    """Scenario 7b: 20 tasks keep querying while the server restarts: every call returns
    or fails clearly within its bound (none hangs), and the pool recovers by itself."""
    dsn = fault_cluster.dsn()
    pool = await agentdb.create_pool(
        dsn, pool_size=5, max_overflow=5, pool_timeout=2, min_size=5, application_name=APP,
        timeout=2,
    )
    restarted = asyncio.Event()
    outcomes: list[tuple[str, float]] = []
    unexpected: list[BaseException] = []

    async def worker(i: int) -> None:
        after_restart_ok = 0
        while after_restart_ok < 3:
            t0 = time.monotonic()
            try:
                if i % 2:
                    async with pool.acquire() as c, c.transaction():
                        await c.execute("SELECT pg_sleep(0.02)", timeout=3)
                else:
                    await pool.fetchval("SELECT pg_sleep(0.02)", timeout=3)
                outcomes.append(("ok", time.monotonic() - t0))
                if restarted.is_set():
                    after_restart_ok += 1
            except OUTAGE_ERRORS as e:
                outcomes.append((type(e).__name__, time.monotonic() - t0))
                await asyncio.sleep(0.01)
            except BaseException as e:  # noqa: BLE001 - reported below
                unexpected.append(e)
                return

    try:
        tasks = [asyncio.ensure_future(worker(i)) for i in range(20)]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(fault_cluster.restart)
        restarted.set()
        with Timer() as t:
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
        assert not unexpected, unexpected[:3]
        assert t.elapsed < 10, t.elapsed  # recovered by itself
        errors_ = [o for o in outcomes if o[0] != "ok"]
        assert errors_, "the restart went unnoticed?"
        assert max(d for _, d in outcomes) < 3 + 1.5, max(outcomes, key=lambda o: o[1])
        await assert_clean(pool, admin_sql, dsn, APP)
    finally:
        await pool.close(timeout=5)


async def test_server_down_at_start(fault_cluster: Any, admin_sql: Any) -> None:
    """Scenario 8: create_pool, get_session and check_database_connection with the server
    down fail or answer within their bounds; everything works once it is up."""
    from sqlalchemy import text

    from agentdb import settings
    from agentdb.settings import agentdb_url

    dsn = fault_cluster.dsn()
    await asyncio.to_thread(fault_cluster.stop)
    # create_pool opens min_size connections: the error, at once.
    with Timer() as t:
        with pytest.raises(agentdb.OperationalError, match="refused"):
            await agentdb.create_pool(dsn, timeout=2, pool_timeout=2, application_name=APP)
    assert t.elapsed < 2 + 1.5
    # min_size=0: created at once; a query fails clearly until the server is up.
    pool = await agentdb.create_pool(
        dsn, min_size=0, timeout=2, pool_timeout=2, application_name=APP
    )
    settings.configure(database_url=agentdb_url(dsn), pool_timeout=2)
    try:
        with Timer() as t:
            with pytest.raises(agentdb.OperationalError):
                await pool.fetchval("SELECT 1")
        assert t.elapsed < 2 + 1.5
        with Timer() as t:
            assert await agentdb.check_database_connection(timeout=2) is False
        assert t.elapsed < 2 + 1.5
        with Timer() as t:
            with pytest.raises(Exception) as info:  # SQLAlchemy wraps the driver's error
                gen = agentdb.get_session()
                session = await gen.__anext__()
                try:
                    await session.execute(text("SELECT 1"))
                finally:
                    await gen.aclose()
        assert t.elapsed < 10 + 1.5  # the drop-in's connect timeout
        assert "refused" in str(info.value) or "timeout" in str(info.value).lower()
        await asyncio.to_thread(fault_cluster.start)
        assert await pool.fetchval("SELECT 1") == 1
        assert await agentdb.check_database_connection(timeout=5) is True
        gen = agentdb.get_session()
        session = await gen.__anext__()
        try:
            assert (await session.execute(text("SELECT 2"))).scalar() == 2
        finally:
            await gen.aclose()
        await assert_clean(pool, admin_sql, dsn, APP)
        native = await agentdb.get_pool()
        await settle(native)
    finally:
        await pool.close(timeout=5)
        await agentdb.close_db_connection()
        settings.reset()
