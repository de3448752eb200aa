"""``Connection._dbapi_execute``: the PEP 249 adapter's one call per statement (BEGIN and
the statement under one sync, PEP 249 description, row count and DDL flag from the core)."""

from __future__ import annotations

import re
from typing import Any

import pytest

import agentdb


async def test_rows_description_rowcount(conn: Any) -> None:
    rows, desc, rowcount, ddl = await conn._dbapi_execute(
        "SELECT g AS n, g::text AS t FROM generate_series(1, $1::int) g", (3,), None
    )
    assert [tuple(r) for r in rows] == [(1, "1"), (2, "2"), (3, "3")]
    assert desc == (
        ("n", 23, None, None, None, None, None),
        ("t", 25, None, None, None, None, None),
    )
    assert (rowcount, ddl) == (3, False)
    again = await conn._dbapi_execute(
        "SELECT g AS n, g::text AS t FROM generate_series(1, $1::int) g", (1,), None
    )
    assert again[1] is desc  # made once per prepared statement


async def test_commands_without_rows(conn: Any) -> None:
    run = conn._dbapi_execute
    assert await run("CREATE TEMP TABLE sa_x (a int)", (), None) == ([], None, -1, False)
    assert (await run("INSERT INTO sa_x SELECT generate_series(1, 4)", (), None))[2:] == (4, False)
    assert (await run("UPDATE sa_x SET a = a + 1 WHERE a > $1::int", (2,), None))[2] == 2
    assert (await conn._dbapi_execute("DELETE FROM sa_x", (), None))[2] == 4
    assert (await conn._dbapi_execute("SET application_name = 'x'", (), None))[2:] == (-1, False)


async def test_ddl_flag(conn: Any) -> None:
    try:
        assert (await conn._dbapi_execute("CREATE TABLE sa_ddl (a int)", (), None))[3] is True
        assert (await conn._dbapi_execute("ALTER TABLE sa_ddl ADD b int", (), None))[3] is True
        temp = await conn._dbapi_execute("CREATE LOCAL TEMPORARY TABLE sa_t (a int)", (), None)
        assert temp[3] is False
    finally:
        assert (await conn._dbapi_execute("DROP TABLE IF EXISTS sa_ddl", (), None))[3] is True


async def test_begin_goes_with_the_statement(conn: Any) -> None:
    assert not conn.is_in_transaction()
    fut = conn._dbapi_execute("SELECT 1 AS one", (), "BEGIN ISOLATION LEVEL REPEATABLE READ")
    assert conn.is_in_transaction()  # once what was issued has run
    rows, _, rowcount, _ = await fut
    assert (rows[0]["one"], rowcount) == (1, 1)
    assert conn.get_transaction_status() == "intrans"
    assert await conn.fetchval("SHOW transaction_isolation") == "repeatable read"
    await conn.execute("ROLLBACK")


async def test_a_failing_statement_leaves_the_transaction_failed(conn: Any) -> None:
    with pytest.raises(agentdb.errors.DivisionByZero):
        await conn._dbapi_execute("SELECT 1 / $1::int", (0,), "BEGIN")
    assert conn.get_transaction_status() == "inerror"
    assert conn.is_in_transaction()
    await conn.execute("ROLLBACK")


async def test_a_failing_begin_runs_nothing(conn: Any) -> None:
    await conn.execute("CREATE TEMP TABLE sa_never (a int)")
    with pytest.raises(agentdb.Error):
        # a BEGIN the server rejects: an unknown isolation level is a syntax error
        await conn._dbapi_execute(
            "INSERT INTO sa_never VALUES (1)", (), "BEGIN ISOLATION LEVEL BOGUS"
        )
    assert await conn.fetchval("SELECT count(*) FROM sa_never") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("SELECT 1", [], None), "_dbapi_execute(sql: str, args: tuple"),
        ((b"SELECT 1", (), None), "_dbapi_execute(sql: str, args: tuple"),
        (("SELECT 1", (), 5), "_dbapi_execute(sql: str, args: tuple"),
        (("SELECT 1", ()), "_dbapi_execute(sql: str, args: tuple"),
    ],
)
async def test_bad_arguments(conn: Any, args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        conn._dbapi_execute(*args)


@pytest.mark.parametrize("begin", ["COMMIT", "SELECT 1", "BEGIN; DROP TABLE x", "BEGIN\x00"])
async def test_begin_must_be_one_begin(conn: Any, begin: str) -> None:
    with pytest.raises(ValueError):
        conn._dbapi_execute("SELECT 1", (), begin)
    assert await conn.fetchval("SELECT 1") == 1  # nothing was queued


async def test_closed_connection(pg_dsn: str) -> None:
    c = await agentdb.connect(pg_dsn)
    await c.close()
    with pytest.raises(agentdb.InterfaceError):
        c._dbapi_execute("SELECT 1", (), None)


async def test_dialect_cursor_hands_rows_out_by_position(pg_dsn: str) -> None:
    """The adapter's cursor reads the core's list by position: fetchone, fetchmany and
    fetchall partition the rows, and fetchall after nothing was read is that list."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.util import greenlet_spawn

    from agentdb.settings import agentdb_url

    engine = create_async_engine(agentdb_url(pg_dsn), pool_size=1, max_overflow=0)

    def body() -> list[Any]:
        fairy = engine.sync_engine.raw_connection()
        try:
            cur = fairy.cursor()
            cur.execute("SELECT g FROM generate_series(1, 6) g")
            assert cur.rowcount == 6
            assert [d[0] for d in cur.description] == ["g"]
            out: list[Any] = [cur.fetchone()[0], [r[0] for r in cur.fetchmany(2)]]
            out.append([r[0] for r in cur.fetchall()])
            out.append((cur.fetchone(), cur.fetchmany(3), cur.fetchall()))
            cur.execute("SELECT 1 AS a")
            rows = cur.fetchall()
            out.append((type(rows), [tuple(r) for r in rows]))
            cur.execute("SELECT g FROM generate_series(1, 3) g")
            out.append([r[0] for r in cur])
            cur.close()
            return out
        finally:
            fairy.close()

    try:
        assert await greenlet_spawn(body) == [
            1, [2, 3], [4, 5, 6], (None, [], []), (list, [(1,)]), [1, 2, 3]
        ]
    finally:
        await engine.dispose()
