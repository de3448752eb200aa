"""The libpq 17+ paths and their fallbacks: the capabilities view, cancel requests on the
event loop (no thread), statements closed on the server when they leave the cache.

Every test asserts on both libpqs: the main passes run on the system's libpq 15 (the
fallbacks: a thread per cancel, no Close message), CI's "libpq18" pass on a core built
against libpq 18 (the new paths).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import pytest

import agentdb
from agentdb import _core

NEW = agentdb.libpq_version() >= 170000

# The cache's statements on the server, but the listing's own (it is prepared too).
LIST_PREPARED = (
    "SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM pg_prepared_statements "
    "WHERE statement NOT LIKE '%pg_prepared_statements%'"
)


def _tasks() -> int:
    """The process's OS threads (what a cancel thread would add)."""
    return len(os.listdir("/proc/self/task"))


async def _server_state(admin_sql: Any, dsn: str, pid: int) -> str:
    rows = await asyncio.to_thread(
        admin_sql, dsn, f"SELECT state FROM pg_stat_activity WHERE pid = {pid}"
    )
    return str(rows[0][0]) if rows else "gone"


def test_libpq_version_and_capabilities() -> None:
    version = agentdb.libpq_version()
    assert isinstance(version, int) and version >= 100000
    caps = agentdb.libpq_capabilities()
    assert isinstance(caps, agentdb.LibpqCapabilities)
    flags = dataclasses.asdict(caps)
    assert set(flags) == {"pipeline_sync", "chunked_rows", "async_cancel", "close_prepared"}
    # Built against the libpq it runs on (CI's passes): all of 17's paths, or none.
    assert flags == dict.fromkeys(flags, NEW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.async_cancel = not NEW  # type: ignore[misc]


def test_report_header_shows_version_and_capabilities(request: pytest.FixtureRequest) -> None:
    from conftest import pytest_report_header

    header = "\n".join(pytest_report_header(request.config))
    assert f"libpq {agentdb.libpq_version()}" in header
    assert str(agentdb.libpq_capabilities()) in header


async def test_cancels_run_on_the_loop_with_libpq_17(
    conn: agentdb.Connection, pg_dsn: str, admin_sql: Any
) -> None:
    """Twenty statements cancelled by their timeout: with libpq 17+ no thread starts (the
    hook's counter and /proc/self/task), with 15 one thread each; either way each stops
    on the server and no PGcancelConn outlives its request."""
    pid = conn.get_backend_pid()
    before = _core._cancel_counts()
    tasks_before = _tasks()
    most_tasks = tasks_before
    for _ in range(20):
        with pytest.raises(TimeoutError):
            await conn.fetchval("SELECT pg_sleep(30)", timeout=0.05)
        most_tasks = max(most_tasks, _tasks())
        # The statement after it runs at once: the cancel stopped the sleep.
        assert await conn.fetchval("SELECT 1", timeout=5) == 1
        most_tasks = max(most_tasks, _tasks())
    after = _core._cancel_counts()
    assert await _server_state(admin_sql, pg_dsn, pid) == "idle"
    assert after["alive"] == 0
    if NEW:
        assert after["threads"] == before["threads"]
        assert after["loop"] - before["loop"] == 20
        assert most_tasks == tasks_before, (tasks_before, most_tasks)
    else:
        assert after["threads"] - before["threads"] == 20
        assert after["loop"] == before["loop"] == 0


async def test_cancelled_task_stops_on_the_server(
    conn: agentdb.Connection, pg_dsn: str, admin_sql: Any
) -> None:
    pid = conn.get_backend_pid()
    before = _core._cancel_counts()
    task = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
    for _ in range(100):
        if await _server_state(admin_sql, pg_dsn, pid) == "active":
            break
    assert await _server_state(admin_sql, pg_dsn, pid) == "active"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await conn.fetchval("SELECT 'after'", timeout=5) == "after"
    assert await _server_state(admin_sql, pg_dsn, pid) == "idle"
    after = _core._cancel_counts()
    path = "loop" if NEW else "threads"
    assert after[path] - before[path] == 1
    assert after["alive"] == 0


async def test_close_cancels_in_flight_and_frees_the_request(
    pg_dsn: str, admin_sql: Any
) -> None:
    """close() with a statement running cancels it, fire and forget: the request outlives
    its connection and frees its PGcancelConn once delivered."""
    from faults.checks import wait_until

    conn = await agentdb.connect(pg_dsn)
    pid = conn.get_backend_pid()
    fut = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
    await asyncio.sleep(0.2)
    assert await _server_state(admin_sql, pg_dsn, pid) == "active"
    conn.terminate()
    with pytest.raises(agentdb.InterfaceError):
        await fut
    assert await wait_until(lambda: _core._cancel_counts()["alive"] == 0, timeout=5)
    for _ in range(50):
        if await _server_state(admin_sql, pg_dsn, pid) != "active":
            break
        await asyncio.sleep(0.1)
    assert await _server_state(admin_sql, pg_dsn, pid) != "active"


async def test_a_cancel_that_gets_no_answer_is_bounded(
    fault_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server never answers the cancel (the link goes silent): cancel_grace closes the
    connection, and with libpq 17+ the request's deadline frees its PGcancelConn."""
    from faults.checks import wait_until

    monkeypatch.setattr(agentdb.connection, "DEFAULT_CANCEL_GRACE", 0.5)
    conn = await agentdb.connect(fault_proxy.dsn, timeout=10)
    before = _core._cancel_counts()
    try:
        fut = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)", timeout=0.3))
        await asyncio.sleep(0.1)
        fault_proxy.silent()
        with pytest.raises(TimeoutError):
            await fut
        assert await wait_until(conn.is_closed, timeout=5)
        after = _core._cancel_counts()
        path = "loop" if NEW else "threads"
        # The timeout's request, and the close's (a statement was still running).
        assert after[path] - before[path] == 2
        if NEW:
            assert await wait_until(lambda: _core._cancel_counts()["alive"] == 0, timeout=5)
    finally:
        conn.terminate()


async def test_cancel_on_a_tls_connection(tls_cluster: tuple[Any, str]) -> None:
    """A TLS connection's statement is cancelled: with libpq 17+ the request negotiates TLS
    as the connection did (PQcancelPoll through the handshake's reads and writes), before
    17 it is sent in clear by a thread.  Either way the statement stops."""
    cluster, ca = tls_cluster
    dsn = (f"hostaddr=127.0.0.1 host=localhost port={cluster.port} user=postgres "
           f"dbname=postgres sslmode=verify-full sslrootcert={ca}")
    try:
        conn = await agentdb.connect(dsn, timeout=10)
        tls = True
    except agentdb.OperationalError as e:
        # A libpq built without TLS (CI's libpq 18) says so; its cancel is tested in clear.
        assert "not compiled in" in str(e), str(e)
        conn = await agentdb.connect(dsn.replace("verify-full", "disable"), timeout=10)
        tls = False
    before = _core._cancel_counts()
    try:
        assert conn.ssl_in_use() == tls
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await conn.fetchval("SELECT pg_sleep(30)", timeout=0.2)
            assert await conn.fetchval("SELECT 1", timeout=5) == 1
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' "
            "AND state = 'active'"
        ) == 0
    finally:
        await conn.close()
    after = _core._cancel_counts()
    path = "loop" if NEW else "threads"
    assert after[path] - before[path] == 3
    assert after["alive"] == 0


def test_a_request_its_loop_drops_frees_its_cancel_conn(
    fault_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests still waiting for the server when their loop is closed (a service shut
    down mid-cancel, the interpreter ending): the loop lets go of them and each frees its
    PGcancelConn (libpq 17+); before 17 they are threads, which end with the link."""
    import gc

    monkeypatch.setattr(agentdb.connection, "DEFAULT_CANCEL_GRACE", 30.0)
    before = _core._cancel_counts()

    async def cancel_into_silence() -> None:
        conn = await agentdb.connect(fault_proxy.dsn, timeout=10)
        fut = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)", timeout=0.3))
        await asyncio.sleep(0.1)
        fault_proxy.silent()
        with pytest.raises(TimeoutError):
            await fut
        conn.terminate()  # the statement still runs: a second request

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(cancel_into_silence())
        during = _core._cancel_counts()
    finally:
        loop.close()
    del loop
    gc.collect()
    after = _core._cancel_counts()
    if NEW:
        assert during["loop"] - before["loop"] == 2
        assert during["alive"] == 2
        assert after["alive"] == 0
    else:
        assert during["threads"] - before["threads"] == 2
        assert during["alive"] == after["alive"] == 0


async def _server_statements(conn: agentdb.Connection) -> set[str]:
    return set(await conn.fetchval(LIST_PREPARED))


async def test_evicted_statements_leave_the_server(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, statement_cache_size=3)
    try:
        for i in range(10):
            assert await conn.fetchval(f"SELECT $1::int + {i}", 1) == 1 + i
        # The three cached; the seven evicted are closed (17+) or deallocated (15).
        assert len(await _server_statements(conn)) == 3
        # In a transaction too, pipelined with the user's statements.
        async with conn.transaction():
            outs = await asyncio.gather(
                *(conn.fetchval(f"SELECT $1::int * {i}", 2) for i in range(10))
            )
            assert outs == [2 * i for i in range(10)]
            assert conn.is_in_transaction()
        assert len(await _server_statements(conn)) <= 3
    finally:
        await conn.close()


async def test_stale_statements_leave_the_server_with_libpq_17(conn: agentdb.Connection) -> None:
    """A stale plan empties the cache: with libpq 17+ every statement forgotten is closed
    on the server; with 15 they stay there until the session ends (documented)."""
    await conn.execute("CREATE TEMP TABLE stale_t (a int)")
    await conn.execute("INSERT INTO stale_t VALUES (1)")
    assert [tuple(r) for r in await conn.fetch("SELECT * FROM stale_t")] == [(1,)]
    assert await conn.fetchval("SELECT $1::text", "x") == "x"
    old = await _server_statements(conn)
    assert len(old) == 2
    await conn.execute("ALTER TABLE stale_t ADD COLUMN b int DEFAULT 2")
    # "cached plan must not change result type": prepared again, transparently.
    assert [tuple(r) for r in await conn.fetch("SELECT * FROM stale_t")] == [(1, 2)]
    now = await _server_statements(conn)
    if NEW:
        assert not old & now, (old, now)
        assert len(now) == 1
    else:
        assert old <= now


async def test_clear_statement_cache_closes_ours_only_with_libpq_17(
    conn: agentdb.Connection,
) -> None:
    await conn.execute("PREPARE users_own AS SELECT 42")
    for i in range(3):
        assert await conn.fetchval(f"SELECT {i}::int") == i
    before = await _server_statements(conn)
    assert "users_own" in before and len(before) == 4
    conn.clear_statement_cache()
    after = await _server_statements(conn)
    # 17+: a Close per cached statement, the user's own stays; 15: DEALLOCATE ALL.
    assert after == ({"users_own"} if NEW else set())


async def test_clear_statement_cache_in_a_failed_transaction(conn: agentdb.Connection) -> None:
    """A Close is not transactional: it closes the statements in a failed transaction too,
    where libpq 15's DEALLOCATE ALL fails (25P02) and leaves them all on the server."""
    for i in range(3):
        assert await conn.fetchval(f"SELECT {i}::int") == i
    before = await _server_statements(conn)
    assert len(before) == 3
    await conn.execute("BEGIN")
    with pytest.raises(agentdb.errors.DivisionByZero):
        await conn.fetchval("SELECT 1/0")
    conn.clear_statement_cache()
    await conn.execute("ROLLBACK")
    assert not conn.is_in_transaction()
    after = await _server_statements(conn)
    if NEW:
        assert after == set()
    else:  # and "SELECT 1/0", prepared before it failed
        assert before < after


async def test_a_users_deallocate_all_pipelined_with_closes(conn: agentdb.Connection) -> None:
    """DEALLOCATE ALL (or a user's PREPARE) empties the cache; with 17+ the forgotten
    statements are closed after it, names the server may no longer have: no error reaches
    anyone and the statements around it get their own results."""
    for i in range(3):
        assert await conn.fetchval(f"SELECT {i}::int") == i
    outs = await asyncio.gather(
        conn.fetchval("SELECT 1::int"),
        conn.execute("DEALLOCATE ALL"),
        conn.fetchval("SELECT 2::int"),
        conn.execute("PREPARE mine AS SELECT 3"),
        conn.fetchval("SELECT $1::int", 4),
    )
    assert outs == [1, "DEALLOCATE ALL", 2, "PREPARE", 4]
    now = await _server_statements(conn)
    # 17+: only what was prepared after the PREPARE and the user's own; 15: the forgotten
    # ones prepared before it stay.
    assert "mine" in now
    assert len(now) == (2 if NEW else 3), now
    assert conn.get_transaction_status() == "idle"


async def test_session_reset_prepares_nothing(conn: agentdb.Connection) -> None:
    """The session reset (internal statements under one sync) is sent as it is, not
    prepared first: no statement of its text on the server, no round trip for it."""
    assert await conn.fetchval("SELECT 1::int") == 1
    await conn.reset()
    await conn.reset()
    texts = await conn.fetchval(
        "SELECT coalesce(array_agg(statement), '{}') FROM pg_prepared_statements"
    )
    assert not [t for t in texts if "session reset" in t], texts
