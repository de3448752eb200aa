"""The pool as asyncpg's: ``async with create_pool(...)``, ``init=``, ``setup=``,
``expire_connections()``, the size getters; the callbacks under the isolation rules
(docs/architecture.md, "Rules of sharing")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agentdb


async def test_create_pool_as_an_async_context_manager(pg_dsn: str) -> None:
    async with agentdb.create_pool(pg_dsn, pool_size=2) as pool:
        assert isinstance(pool, agentdb.Pool)
        assert await pool.fetchval("SELECT 1") == 1
        assert not pool.is_closing()
    assert pool.is_closing()
    with pytest.raises(agentdb.InterfaceError):
        await pool.fetchval("SELECT 1")
    # awaited, as before
    pool2 = await agentdb.create_pool(pg_dsn, pool_size=1)
    try:
        assert await pool2.fetchval("SELECT 2") == 2
    finally:
        await pool2.close()


async def test_create_pool_context_manager_failure(pg_dsn: str) -> None:
    with pytest.raises(ValueError, match="min_size"):
        async with agentdb.create_pool(pg_dsn, pool_size=1, min_size=2):
            pass
    with pytest.raises(RuntimeError, match="inside"):
        async with agentdb.create_pool(pg_dsn, pool_size=1) as pool:
            raise RuntimeError("inside")
    assert pool.is_closing()


async def test_size_getters(pg_dsn: str) -> None:
    async with agentdb.create_pool(pg_dsn, pool_size=3, max_overflow=2, min_size=2) as pool:
        assert pool.get_min_size() == 2
        assert pool.get_max_size() == 5
        assert pool.get_size() == 2 and pool.get_idle_size() == 2
        async with pool.acquire(), pool.acquire(), pool.acquire():
            assert pool.get_size() == 3 and pool.get_idle_size() == 0


async def test_init_runs_once_per_new_connection(pg_dsn: str) -> None:
    seen: list[int] = []

    async def init(conn: agentdb.Connection) -> None:
        assert isinstance(conn, agentdb.Connection)
        seen.append(conn.get_server_pid())

    async with agentdb.create_pool(pg_dsn, pool_size=3, min_size=2, init=init) as pool:
        assert len(seen) == 2
        async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
            pids = {a.get_server_pid(), b.get_server_pid(), c.get_server_pid()}
        assert sorted(seen) == sorted(pids)  # 3 connections, init once each
        async with pool.acquire():
            pass
        assert len(seen) == 3


async def test_init_failure_fails_the_open_and_leaks_nothing(pg_dsn: str) -> None:
    async def init(conn: agentdb.Connection) -> None:
        await conn.execute("SET application_name = 'init_failure_probe'")
        raise RuntimeError("init refused")

    with pytest.raises(RuntimeError, match="init refused"):
        await agentdb.create_pool(pg_dsn, pool_size=2, min_size=2, init=init)
    probe = await agentdb.connect(pg_dsn)
    try:
        for _ in range(100):  # the backends' exit is asynchronous
            n = await probe.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                "init_failure_probe",
            )
            if n == 0:
                break
            await asyncio.sleep(0.05)
        assert n == 0
    finally:
        await probe.close()
    # a connection opened later whose init fails counts as a failed connect: the pool
    # tries again (after its back-off) for the waiter, which gets a connection whose
    # init succeeded
    calls = 0

    async def flaky(conn: agentdb.Connection) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("second init fails")

    async with agentdb.create_pool(pg_dsn, pool_size=2, min_size=1, init=flaky) as pool:
        async with pool.acquire():
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT 1") == 1
        assert calls == 3
        assert pool.stats()["connect_errors"] == 1
        assert pool.get_size() == 2


async def test_init_prepares_statements_the_borrowers_reuse(pg_dsn: str) -> None:
    async def init(conn: agentdb.Connection) -> None:
        await conn.prepare("SELECT $1::int * 3")

    async with agentdb.create_pool(pg_dsn, pool_size=1, init=init) as pool:
        async with pool.acquire() as conn:
            before = conn._statement_count()
            assert await conn.fetchval("SELECT $1::int * 3", 2) == 6
            assert conn._statement_count() == before  # cached by init


SEARCH_PATH = "SELECT current_setting('search_path')"


async def test_init_session_state_follows_the_reset_rule(pg_dsn: str) -> None:
    async def init(conn: agentdb.Connection) -> None:
        await conn.execute("SET search_path = pg_catalog")

    # the default rule: no borrower sees init's SET, the first one neither
    async with agentdb.create_pool(pg_dsn, pool_size=1, init=init) as pool:
        for _ in range(2):
            async with pool.acquire() as conn:
                assert await conn.fetchval(SEARCH_PATH) == '"$user", public'
        assert await pool.fetchval(SEARCH_PATH) == '"$user", public'
    # reset="transaction": session state stays with the connection, init's too
    async with agentdb.create_pool(pg_dsn, pool_size=1, init=init, reset="transaction") as pool:
        for _ in range(2):
            async with pool.acquire() as conn:
                assert await conn.fetchval(SEARCH_PATH) == "pg_catalog"
    # server_settings: the connect-time state every reset returns to
    async with agentdb.create_pool(
        pg_dsn, pool_size=1, server_settings={"search_path": "pg_catalog"}
    ) as pool:
        async with pool.acquire() as conn:
            await conn.execute("SET search_path = public")
        async with pool.acquire() as conn:
            assert await conn.fetchval(SEARCH_PATH) == "pg_catalog"


async def test_setup_runs_on_each_acquire(pg_dsn: str) -> None:
    calls: list[int] = []

    async def setup(conn: agentdb.Connection) -> None:
        calls.append(conn.get_server_pid())
        await conn.execute("SELECT set_config('application_name', 'set_up', false)")

    async with agentdb.create_pool(pg_dsn, pool_size=1, setup=setup) as pool:
        for _ in range(3):
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT current_setting('application_name')") == (
                    "set_up"
                )
        conn = await pool.acquire()
        await pool.release(conn)
        assert len(calls) == 4 and len(set(calls)) == 1


async def test_setup_runs_for_shortcuts(pg_dsn: str) -> None:
    calls = 0

    async def setup(conn: agentdb.Connection) -> None:
        nonlocal calls
        calls += 1
        await conn.execute("SET search_path = pg_catalog")

    async with agentdb.create_pool(pg_dsn, pool_size=2, setup=setup) as pool:
        assert await pool.fetchval(SEARCH_PATH) == "pg_catalog"
        assert (await pool.fetchrow(SEARCH_PATH))[0] == "pg_catalog"  # type: ignore[index]
        assert (await pool.fetch(SEARCH_PATH))[0][0] == "pg_catalog"
        assert await pool.execute("SELECT 1") == "SELECT 1"
        assert await pool.fetchval("SELECT $1::int", 5, column=0, timeout=5) == 5
        await pool.executemany("SELECT $1::int", [(1,)])
        assert calls == 6
        # the borrower's SET is reset on release, as any: the next acquire's setup sets it
        assert pool.stats()["session_resets"] >= 1


async def test_setup_failure_releases_the_connection(pg_dsn: str) -> None:
    async def setup(conn: agentdb.Connection) -> None:
        await conn.execute("BEGIN")
        raise RuntimeError("setup refused")

    async with agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0, setup=setup) as pool:
        for _ in range(2):
            with pytest.raises(RuntimeError, match="setup refused"):
                async with pool.acquire():
                    pass
            with pytest.raises(RuntimeError, match="setup refused"):
                await pool.acquire()
        s = pool.stats()
        assert s["in_use"] == 0 and s["size"] == 1 and s["rollbacks"] >= 1


class CustomPool(agentdb.Pool):
    def custom(self) -> str:
        return "custom"


async def test_setup_with_a_pool_class(pg_dsn: str) -> None:
    async def setup(conn: agentdb.Connection) -> None:
        await conn.execute("SET search_path = pg_catalog")

    async with agentdb.create_pool(
        pg_dsn, pool_size=1, setup=setup, pool_class=CustomPool
    ) as pool:
        assert isinstance(pool, CustomPool)
        assert pool.custom() == "custom"
        assert await pool.fetchval(SEARCH_PATH) == "pg_catalog"


async def test_callbacks_must_be_callable(pg_dsn: str) -> None:
    with pytest.raises(TypeError, match="init"):
        await agentdb.create_pool(pg_dsn, init="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="setup"):
        await agentdb.create_pool(pg_dsn, setup=42)  # type: ignore[arg-type]


async def test_expire_connections(pg_dsn: str) -> None:
    async with agentdb.create_pool(pg_dsn, pool_size=2, min_size=2) as pool:
        async with pool.acquire() as conn:
            first = conn.get_server_pid()
        held = await pool.acquire()
        held_pid = held.get_server_pid()
        await pool.expire_connections()
        # the held connection works until released, then is replaced
        assert await held.fetchval("SELECT 1") == 1
        await pool.release(held)
        pids: set[int] = set()
        conns: list[Any] = []
        for _ in range(2):
            conns.append(await pool.acquire())
        pids = {c.get_server_pid() for c in conns}
        for c in conns:
            await pool.release(c)
        assert not pids & {first, held_pid}
        assert pool.stats()["recycled"] >= 2
        # connections opened after the call are kept
        async with pool.acquire() as conn:
            assert conn.get_server_pid() in pids
        # shortcuts too run on new connections only
        assert await pool.fetchval("SELECT pg_backend_pid()") in pids


async def test_asyncpg_pool_arguments(pg_dsn: str) -> None:
    async with agentdb.create_pool(
        pg_dsn, min_size=1, max_size=3, max_inactive_connection_lifetime=60.0
    ) as pool:
        assert pool.get_max_size() == 3
        assert pool.stats()["max_overflow"] == 0
    with pytest.raises(TypeError, match="max_size"):
        await agentdb.create_pool(pg_dsn, max_size=3, pool_size=3)
    with pytest.raises(TypeError, match="max_queries"):
        await agentdb.create_pool(pg_dsn, max_queries=100)
    with pytest.raises(TypeError, match="connect="):
        await agentdb.create_pool(pg_dsn, connect=agentdb.connect)
