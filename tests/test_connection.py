"""Connection: connecting, statements, errors, transactions, ordering, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

import agentdb
from agentdb import errors


async def test_connect_url_variants(pg_dsn: str) -> None:
    rest = pg_dsn.split("://", 1)[1]
    for scheme in ("postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg"):
        conn = await agentdb.connect(f"{scheme}://{rest}", timeout=10)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
    assert conn.is_closed()


async def test_connect_keyword_value_and_kwargs(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    host, port, db = "127.0.0.1", conn.get_parameter_status("port"), None
    db = await conn.fetchval("SELECT current_database()")
    port = await conn.fetchval("SELECT current_setting('port')")
    await conn.close()
    kv = f"host={host} port={port} dbname={db} user=postgres application_name=kvtest"
    conn = await agentdb.connect(kv)
    try:
        assert await conn.fetchval("SELECT current_setting('application_name')") == "kvtest"
    finally:
        await conn.close()
    conn = await agentdb.connect(
        host="localhost", port=int(port), user="postgres", database=db,
        server_settings={"application_name": "kwargs test"},
    )
    try:
        assert await conn.fetchval("SELECT current_setting('application_name')") == "kwargs test"
    finally:
        await conn.close()


async def test_several_hosts_first_unreachable(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    port = await conn.fetchval("SELECT current_setting('port')")
    db = await conn.fetchval("SELECT current_database()")
    await conn.close()
    # Port 1 refuses: libpq moves on to the next host.
    conn = await agentdb.connect(
        f"postgresql://postgres@127.0.0.1:1,127.0.0.1:{port}/{db}", timeout=10
    )
    try:
        assert await conn.fetchval("SELECT 2") == 2
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://postgres:s3cretpw@127.0.0.1:1/x", "127.0.0.1"),
        ("postgresql://postgres:s3cretpw@no-such-host.invalid/x", "no-such-host.invalid"),
        ("postgresql://postgres:s3cretpw@127.0.0.1:{port}/no_such_db_agentdb", "no_such_db"),
        ("postgresql://nosuchuser:s3cretpw@127.0.0.1:{port}/postgres", "nosuchuser"),
        ("postgresql://postgres:s3cretpw@127.0.0.1:{port}/postgres?bogus=1", "bogus"),
        ("postgresql://postgres:s3cretpw@127.0.0.1:notaport/postgres", "notaport"),
    ],
)
async def test_connect_errors_name_the_problem_and_hide_the_password(
    pg_dsn: str, url: str, needle: str
) -> None:
    port = pg_dsn.rsplit(":", 1)[1].split("/")[0]
    start = time.monotonic()
    with pytest.raises((agentdb.Error, OSError)) as info:
        await agentdb.connect(url.format(port=port), timeout=5)
    assert time.monotonic() - start < 5.5
    text = str(info.value) + repr(info.value)
    assert needle in text
    assert "s3cretpw" not in text


async def test_wrong_password_against_a_password_cluster(fault_cluster: Any) -> None:
    conn = await agentdb.connect(fault_cluster.dsn())
    await conn.execute("CREATE ROLE pwuser LOGIN PASSWORD 'right-pw'")
    await conn.close()
    fault_cluster.set_hba(
        "local all postgres trust\nhost all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    base = fault_cluster.dsn().replace("postgres@", "pwuser:{pw}@")
    conn = await agentdb.connect(base.format(pw="right-pw"))
    assert await conn.fetchval("SELECT current_user") == "pwuser"
    await conn.close()
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect(base.format(pw="wrong-pw-xyz"), timeout=5)
    assert "password authentication failed" in str(info.value)
    assert "wrong-pw-xyz" not in str(info.value)


async def test_connect_timeout_against_a_silent_listener() -> None:
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)  # accepts into the backlog, never answers
    port = srv.getsockname()[1]
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await agentdb.connect(f"postgresql://u:pw@127.0.0.1:{port}/db", timeout=0.5)
        assert 0.4 < time.monotonic() - start < 2
    finally:
        srv.close()


async def test_fetch_methods(conn: agentdb.Connection) -> None:
    assert await conn.execute("CREATE TEMP TABLE t (id int primary key, name text)") == (
        "CREATE TABLE"
    )
    await conn.executemany("INSERT INTO t VALUES ($1, $2)", [(1, "a"), (2, "b"), (3, None)])
    rows = await conn.fetch("SELECT * FROM t WHERE id >= $1 ORDER BY id", 1)
    assert [tuple(r) for r in rows] == [(1, "a"), (2, "b"), (3, None)]
    assert rows[0]["name"] == "a" and rows[0][0] == 1 and dict(rows[1]) == {"id": 2, "name": "b"}
    row = await conn.fetchrow("SELECT * FROM t WHERE id = $1", 2)
    assert row is not None and row["name"] == "b"
    assert await conn.fetchrow("SELECT * FROM t WHERE id = $1", 99) is None
    assert await conn.fetchval("SELECT count(*) FROM t") == 3
    assert await conn.fetchval("SELECT id, name FROM t WHERE id = 2", column=1) == "b"
    assert await conn.fetchval("SELECT 1 WHERE false") is None
    assert await conn.execute("UPDATE t SET name = $1 WHERE id > $2", "z", 1) == "UPDATE 2"
    assert await conn.execute("DELETE FROM t WHERE id = 3; SELECT 1") == "SELECT 1"
    assert await conn.fetch("SELECT 1 WHERE false") == []


async def test_executemany_is_atomic(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE m (id int primary key)")
    with pytest.raises(errors.UniqueViolation):
        await conn.executemany("INSERT INTO m VALUES ($1)", [(1,), (2,), (2,), (3,)])
    assert await conn.fetchval("SELECT count(*) FROM m") == 0
    with pytest.raises(agentdb.DataError):
        await conn.executemany("INSERT INTO m VALUES ($1)", [(1,), ("not an int",)])
    assert await conn.fetchval("SELECT count(*) FROM m") == 0
    await conn.executemany("INSERT INTO m VALUES ($1)", [(i,) for i in range(1000)])
    assert await conn.fetchval("SELECT count(*) FROM m") == 1000
    await conn.executemany("INSERT INTO m VALUES ($1)", [])
    assert await conn.fetchval("SELECT 1") == 1


async def test_server_error_attributes(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE e (id int primary key, v int not null)")
    await conn.execute("INSERT INTO e VALUES (1, 1)")
    with pytest.raises(errors.UniqueViolation) as info:
        await conn.execute("INSERT INTO e VALUES ($1, $2)", 1, 2)
    e = info.value
    assert isinstance(e, agentdb.IntegrityError) and isinstance(e, agentdb.DatabaseError)
    assert e.sqlstate == "23505"
    assert e.detail == "Key (id)=(1) already exists."
    assert e.constraint_name == "e_pkey" and e.table_name == "e"
    with pytest.raises(errors.NotNullViolation):
        await conn.execute("INSERT INTO e VALUES (2, NULL)")
    with pytest.raises(errors.UndefinedTable) as info2:
        await conn.fetch("SELECT * FROM no_such_table_here")
    assert info2.value.position == 15
    assert isinstance(info2.value, agentdb.ProgrammingError)
    with pytest.raises(errors.SyntaxError) as info3:
        await conn.execute("SELEC 1")
    assert info3.value.sqlstate == "42601"
    with pytest.raises(errors.DivisionByZero):
        await conn.fetchval("SELECT 1/0")
    with pytest.raises(errors.RaiseException) as info4:
        await conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'boom' USING HINT = 'try again'; END $$"
        )
    assert info4.value.hint == "try again" and "boom" in str(info4.value)
    # The connection is still usable after every error.
    assert await conn.fetchval("SELECT 7") == 7


async def test_bad_input_raises_clearly(conn: agentdb.Connection) -> None:
    with pytest.raises(agentdb.DataError, match=r"\$1"):
        await conn.fetchval("SELECT $1::int", "abc")
    with pytest.raises(agentdb.InterfaceError, match="2"):
        await conn.fetchval("SELECT $1::int + $2::int", 1)
    with pytest.raises(agentdb.DataError):
        await conn.fetchval("SELECT $1::text", "nul\x00char")
    with pytest.raises(TypeError):
        await conn.fetchval(123)  # type: ignore[arg-type]
    with pytest.raises(agentdb.DataError):
        await conn.fetchval("SELECT $1::int2", 70000)
    assert await conn.fetchval("SELECT $1::int", 5) == 5


async def test_transactions_and_savepoints(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE x (v int)")
    async with conn.transaction():
        assert conn.is_in_transaction()
        await conn.execute("INSERT INTO x VALUES (1)")
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                await conn.execute("INSERT INTO x VALUES (2)")
                raise ZeroDivisionError
        async with conn.transaction():
            await conn.execute("INSERT INTO x VALUES (3)")
    assert not conn.is_in_transaction()
    assert [r[0] for r in await conn.fetch("SELECT v FROM x ORDER BY v")] == [1, 3]
    with pytest.raises(RuntimeError):
        async with conn.transaction():
            await conn.execute("INSERT INTO x VALUES (4)")
            raise RuntimeError
    assert await conn.fetchval("SELECT count(*) FROM x WHERE v = 4") == 0
    # A failed statement inside: the block rolls back, the connection stays clean.
    with pytest.raises(errors.DivisionByZero):
        async with conn.transaction():
            await conn.fetchval("SELECT 1/0")
    assert conn.get_transaction_status() == "idle"


async def test_transaction_options(conn: agentdb.Connection) -> None:
    async with conn.transaction(isolation="serializable", readonly=True, deferrable=True):
        assert await conn.fetchval("SELECT current_setting('transaction_isolation')") == (
            "serializable"
        )
        with pytest.raises(errors.ReadOnlySqlTransaction):
            await conn.execute("CREATE TEMP TABLE ro (v int)")
    async with conn.transaction(isolation="repeatable_read"):
        assert await conn.fetchval("SHOW transaction_isolation") == "repeatable read"
    with pytest.raises(ValueError):
        conn.transaction(isolation="bogus")


async def test_concurrent_statements_on_one_connection_run_in_order(
    conn: agentdb.Connection,
) -> None:
    await conn.execute("CREATE TEMP TABLE o (n int)")

    async def insert(i: int) -> str:
        return await conn.execute("INSERT INTO o VALUES ($1)", i)

    results = await asyncio.gather(*(insert(i) for i in range(200)))
    assert results == ["INSERT 0 1"] * 200
    got = [r[0] for r in await conn.fetch("SELECT n FROM o ORDER BY ctid")]
    assert got == list(range(200))
    # Each gets its own result or error; an error does not spill into the next.
    outs = await asyncio.gather(
        conn.fetchval("SELECT 1"),
        conn.fetchval("SELECT 1/0"),
        conn.fetchval("SELECT 3"),
        conn.fetchval("SELECT $1::int", "x"),
        conn.fetchval("SELECT 5"),
        return_exceptions=True,
    )
    assert outs[0] == 1 and outs[2] == 3 and outs[4] == 5
    assert isinstance(outs[1], errors.DivisionByZero)
    assert isinstance(outs[3], agentdb.DataError)


async def test_statement_timeout_cancels_on_the_server(
    conn: agentdb.Connection, pg_dsn: str, admin_sql: Any
) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await conn.fetchval("SELECT pg_sleep(10)", timeout=0.3)
    assert time.monotonic() - start < 1.5
    # The server-side statement was cancelled: the connection answers at once.
    assert await conn.fetchval("SELECT 42", timeout=3) == 42
    assert time.monotonic() - start < 3
    pid = conn.get_backend_pid()
    assert admin_sql(pg_dsn, f"SELECT state FROM pg_stat_activity WHERE pid = {pid}") == [
        ("idle",)
    ]


async def test_command_timeout_default(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, command_timeout=0.2)
    try:
        with pytest.raises(TimeoutError):
            await conn.execute("SELECT pg_sleep(5)")
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_task_cancelled_mid_query_cancels_the_server_query(
    conn: agentdb.Connection, pg_dsn: str, admin_sql: Any
) -> None:
    task = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(10)"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    start = time.monotonic()
    assert await conn.fetchval("SELECT 'after'", timeout=3) == "after"
    assert time.monotonic() - start < 2
    pid = conn.get_backend_pid()
    assert admin_sql(pg_dsn, f"SELECT state FROM pg_stat_activity WHERE pid = {pid}") == [
        ("idle",)
    ]


async def test_tiny_timeouts_then_select_1(conn: agentdb.Connection) -> None:
    ok = 0
    for _ in range(300):
        try:
            await conn.fetchval("SELECT pg_sleep(0.001)", timeout=0.0005)
        except TimeoutError:
            pass
        assert await conn.fetchval("SELECT 1", timeout=5) == 1
        ok += 1
    assert ok == 300


async def test_backend_killed_while_idle_and_while_busy(
    pg_dsn: str, admin_sql: Any
) -> None:
    conn = await agentdb.connect(pg_dsn)
    pid = conn.get_backend_pid()
    admin_sql(pg_dsn, f"SELECT pg_terminate_backend({pid})")
    for _ in range(50):
        if conn.is_closed():
            break
        await asyncio.sleep(0.02)
    assert conn.is_closed()  # noticed without a query: the socket turned readable
    with pytest.raises(agentdb.InterfaceError):
        await conn.fetchval("SELECT 1")

    conn = await agentdb.connect(pg_dsn)
    pid = conn.get_backend_pid()
    task = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(10)"))
    await asyncio.sleep(0.2)
    admin_sql(pg_dsn, f"SELECT pg_terminate_backend({pid})")
    start = time.monotonic()
    with pytest.raises(agentdb.OperationalError):
        await task
    assert time.monotonic() - start < 2
    await asyncio.sleep(0.05)
    assert conn.is_closed()


async def test_loop_never_blocks(pg_dsn: str) -> None:
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.01)

    t = asyncio.ensure_future(ticker())
    conns = await asyncio.gather(*(agentdb.connect(pg_dsn) for _ in range(10)))
    start = time.monotonic()
    await asyncio.gather(*(c.execute("SELECT pg_sleep(0.5)") for c in conns for _ in range(5)))
    elapsed = time.monotonic() - start
    stop = True
    await t
    await asyncio.gather(*(c.close() for c in conns))
    # 50 statements of 0.5 s on 10 connections: ~2.5 s, and the ticker ran throughout.
    assert ticks >= elapsed / 0.01 * 0.5


async def test_statement_cache(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, statement_cache_size=3)
    try:
        for i in range(10):
            assert await conn.fetchval(f"SELECT {i}::int") == i
        assert conn._statement_count() == 3
        stmts = await conn.fetchval(
            "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '__adb_%'"
        )
        assert stmts <= 4  # evicted ones are deallocated on the server
        # A cached plan that went stale is prepared again transparently.
        await conn.execute("CREATE TEMP TABLE s (a int)")
        assert await conn.fetch("SELECT * FROM s") == []
        await conn.execute("ALTER TABLE s ADD COLUMN b text")
        await conn.execute("INSERT INTO s VALUES (1, 'x')")
        rows = await conn.fetch("SELECT * FROM s")
        assert [tuple(r) for r in rows] == [(1, "x")]
        # DISCARD ALL (what a pooler may do) drops them: also re-prepared.
        await conn.execute("DISCARD ALL")
        assert await conn.fetchval("SELECT 9::int") == 9
    finally:
        await conn.close()


async def test_statement_cache_off(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, statement_cache_size=0)
    try:
        assert await conn.fetchval("SELECT $1::int + 1", 1) == 2
        assert await conn.fetchval("SELECT $1 || 'b'", "a") == "ab"
        await conn.execute("CREATE TEMP TABLE c0 (id int)")
        await conn.executemany("INSERT INTO c0 VALUES ($1)", [(1,), (2,)])
        assert await conn.fetchval("SELECT sum(id) FROM c0") == 3
        assert await conn.fetchval("SELECT count(*) FROM pg_prepared_statements") == 0
    finally:
        await conn.close()


async def test_closed_connection_and_close_twice(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    pending = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(5)"))
    await asyncio.sleep(0.05)
    await conn.close()
    with pytest.raises(agentdb.InterfaceError):
        await pending
    await conn.close()
    conn.terminate()
    with pytest.raises(agentdb.InterfaceError, match="closed"):
        await conn.fetch("SELECT 1")


async def test_unclosed_connection_warns_when_collected(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    await asyncio.sleep(0)  # the loop's last handle still refers to the connect future
    with pytest.warns(ResourceWarning, match="unclosed"):
        del conn
        gc.collect()


async def test_connection_used_from_another_loop_is_a_clear_error(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    try:
        def other() -> None:
            async def use() -> Any:
                return await conn.fetchval("SELECT 1")

            with pytest.raises(agentdb.InterfaceError, match="another event loop"):
                asyncio.run(use())

        await asyncio.get_running_loop().run_in_executor(None, other)
    finally:
        await conn.close()


async def test_password_never_in_repr(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, password="hunter2-secret")
    try:
        assert "hunter2" not in repr(conn)
    finally:
        await conn.close()


async def test_cancelled_while_connecting_leaks_nothing(pg_dsn: str, admin_sql: Any) -> None:
    for delay in (0.0, 0.001, 0.003, 0.01):
        task = asyncio.ensure_future(agentdb.connect(pg_dsn, application_name="cancelconn"))
        await asyncio.sleep(delay)
        task.cancel()
        try:
            conn = await task
        except asyncio.CancelledError:
            continue
        await conn.close()  # finished before the cancel landed
    await asyncio.sleep(0.3)
    rows = admin_sql(
        pg_dsn, "SELECT pid FROM pg_stat_activity WHERE application_name = 'cancelconn'"
    )
    assert rows == []


async def test_clear_statement_cache_after_ddl_in_a_transaction(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE cc (a int)")
    assert await conn.fetch("SELECT * FROM cc") == []
    async with conn.transaction():
        await conn.execute("ALTER TABLE cc ADD COLUMN b int")
        conn.clear_statement_cache()
        assert conn._statement_count() == 0
        assert await conn.fetch("SELECT * FROM cc") == []
    # The old statements are gone on the server: only the new SELECT and this query remain.
    assert await conn.fetchval(
        "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '__adb_%'"
    ) == 2


async def test_listen_notify(conn: agentdb.Connection, pg_dsn: str) -> None:
    got: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()

    def on_notify(c: agentdb.Connection, pid: int, channel: str, payload: str) -> None:
        assert c is conn
        got.put_nowait((pid, channel, payload))

    await conn.add_listener("agentdb chan", on_notify)
    other = await agentdb.connect(pg_dsn)
    try:
        await other.execute("SELECT pg_notify('agentdb chan', 'hello')")
        pid, channel, payload = await asyncio.wait_for(got.get(), 5)
        assert (pid, channel, payload) == (other.get_backend_pid(), "agentdb chan", "hello")
        await conn.remove_listener("agentdb chan", on_notify)
        await other.execute("SELECT pg_notify('agentdb chan', 'again')")
        await conn.fetchval("SELECT 1")
        await asyncio.sleep(0.1)
        assert got.empty()
    finally:
        await other.close()


async def test_notices_reach_handlers_and_a_flood_is_harmless(
    conn: agentdb.Connection, pg_dsn: str
) -> None:
    seen: list[Any] = []
    conn.add_log_listener(lambda c, msg: seen.append(msg))
    await conn.execute("DO $$ BEGIN RAISE NOTICE 'hi %', 42; END $$")
    await asyncio.sleep(0.05)
    assert len(seen) == 1 and str(seen[0]) == "hi 42" and seen[0].severity == "NOTICE"
    conn.remove_log_listener(seen.append)  # not registered: ignored
    # 100k notices without handlers cost nothing and keep the connection healthy.
    conn2 = await agentdb.connect(pg_dsn)
    try:
        await conn2.execute(
            "DO $$ BEGIN FOR i IN 1..100000 LOOP RAISE NOTICE 'n %', i; END LOOP; END $$"
        )
        assert await conn2.fetchval("SELECT 1") == 1
    finally:
        await conn2.close()


async def test_pool_release_forgets_listeners(pg_dsn: str, admin_sql: Any) -> None:
    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0)
    try:
        async with pool.acquire() as c:
            await c.add_listener("ch_x", lambda *a: None)
            pid = c.get_backend_pid()
        async with pool.acquire() as c:
            assert c.get_backend_pid() == pid
            assert c._listeners() == {}
            assert await c.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
    finally:
        await pool.close()


async def test_is_in_transaction_while_other_statements_are_in_flight(
    conn: agentdb.Connection,
) -> None:
    await conn.execute("BEGIN")
    slow = asyncio.ensure_future(conn.execute("SELECT pg_sleep(0.2)"))
    await asyncio.sleep(0.05)
    assert conn.get_transaction_status() == "active"
    assert conn.is_in_transaction()
    await slow
    await conn.execute("COMMIT")
    slow = asyncio.ensure_future(conn.execute("SELECT pg_sleep(0.2)"))
    await asyncio.sleep(0.05)
    assert not conn.is_in_transaction()
    await slow


async def test_large_results_whole_and_failing_midway(conn: agentdb.Connection) -> None:
    """Large results arrive in chunks on libpq 17+ (whole before): the rows are the same,
    several fetches pipelined keep their order, and an error after some rows were sent
    fails only that statement."""
    rows = await conn.fetch("SELECT g, repeat('x', g % 50) AS s FROM generate_series(1, 5000) g")
    assert [r["g"] for r in rows] == list(range(1, 5001))
    assert rows[-1]["s"] == "x" * (5000 % 50)
    many = await asyncio.gather(
        *[conn.fetch("SELECT g FROM generate_series(1, $1::int) g", n) for n in (700, 0, 1, 300)]
    )
    assert [len(m) for m in many] == [700, 0, 1, 300]
    assert many[0][-1][0] == 700 and many[3][0][0] == 1
    with pytest.raises(agentdb.errors.DivisionByZero):
        await conn.fetch("SELECT 1 / (g - 3000) FROM generate_series(1, 5000) g")
    failing = conn.fetch("SELECT 1 / (g - 3000) FROM generate_series(1, 5000) g")
    after = conn.fetch("SELECT g FROM generate_series(1, 1000) g")
    results = await asyncio.gather(failing, after, return_exceptions=True)
    assert isinstance(results[0], agentdb.errors.DivisionByZero)
    assert len(results[1]) == 1000  # type: ignore[arg-type]
    assert await conn.fetchval("SELECT 42") == 42
