"""Server-side cursors, as asyncpg's conn.cursor(): inside a transaction only, ``async
for`` with ``prefetch``, ``await conn.cursor(...)`` with fetch(n)/fetchrow()/forward(n),
and a pooled connection's cursors closed by its release reset."""

from __future__ import annotations

import pytest

import agentdb

SERIES = "SELECT g, g::text AS t FROM generate_series(1, $1::int) g"
OPEN_CURSORS = "SELECT count(*) FROM pg_cursors WHERE name <> ''"  # not this query's portal



def no_active_transaction() -> type[Exception]:
    return agentdb.errors.lookup("25P01")


async def test_cursor_needs_a_transaction(conn: agentdb.Connection) -> None:
    with pytest.raises(no_active_transaction(), match="outside of a transaction"):
        async for _ in conn.cursor("SELECT 1"):
            pass
    with pytest.raises(no_active_transaction(), match="outside of a transaction"):
        await conn.cursor("SELECT 1")
    assert issubclass(no_active_transaction(), agentdb.Error)
    # a transaction begun by hand counts too
    await conn.execute("BEGIN")
    cur = await conn.cursor("SELECT 1 AS one")
    assert (await cur.fetchrow())["one"] == 1  # type: ignore[index]
    await conn.execute("ROLLBACK")


@pytest.mark.parametrize("prefetch", [None, 1, 7, 50, 1000])
async def test_async_for_reads_every_row(conn: agentdb.Connection, prefetch: int | None) -> None:
    async with conn.transaction():
        got = [r["g"] async for r in conn.cursor(SERIES, 123, prefetch=prefetch)]
    assert got == list(range(1, 124))


async def test_async_for_fetches_prefetch_rows_at_a_time(conn: agentdb.Connection) -> None:
    fetches: list[str] = []
    conn.add_query_logger(lambda q: fetches.append(q.query))
    async with conn.transaction():
        n = sum([1 async for _ in conn.cursor(SERIES, 25, prefetch=10)])
    assert n == 25
    fetch_sql = [q for q in fetches if q.startswith("FETCH")]
    assert len(fetch_sql) == 3 and all(q.startswith("FETCH FORWARD 10 ") for q in fetch_sql)
    declare = [q for q in fetches if q.startswith("DECLARE")]
    assert len(declare) == 1 and declare[0].endswith(SERIES)
    # the exhausted cursor was closed at once
    assert any(q.startswith("CLOSE") for q in fetches)


async def test_empty_result(conn: agentdb.Connection) -> None:
    async with conn.transaction():
        assert [r async for r in conn.cursor(SERIES, 0)] == []
        cur = await conn.cursor(SERIES, 0)
        assert await cur.fetchrow() is None
        assert await cur.fetch(5) == []


async def test_awaited_cursor(conn: agentdb.Connection) -> None:
    async with conn.transaction():
        cur = await conn.cursor(SERIES, 10)
        first = await cur.fetchrow()
        assert first is not None and tuple(first) == (1, "1")
        assert await cur.forward(3) == 3  # skips 2, 3, 4
        assert [r["g"] for r in await cur.fetch(4)] == [5, 6, 7, 8]
        assert await cur.forward(5) == 2  # only 9 and 10 were left
        assert await cur.fetch(3) == []
        assert await cur.fetchrow() is None


async def test_cursor_arguments_and_types(conn: agentdb.Connection) -> None:
    async with conn.transaction():
        cur = await conn.cursor(
            "SELECT $1::int8 AS i, $2::text AS t, $3::jsonb AS j, $4::int[] AS a",
            5,
            "x",
            {"k": [1]},
            [1, 2],
        )
        row = await cur.fetchrow()
    assert row is not None and tuple(row) == (5, "x", {"k": [1]}, [1, 2])


async def test_bad_arguments(conn: agentdb.Connection) -> None:
    with pytest.raises(agentdb.InterfaceError, match="prefetch argument can only"):
        await conn.cursor("SELECT 1", prefetch=10)
    with pytest.raises(agentdb.InterfaceError, match="greater than zero"):
        conn.cursor("SELECT 1", prefetch=0)
    with pytest.raises(TypeError):
        conn.cursor("SELECT 1", prefetch="10")  # type: ignore[arg-type]
    with pytest.raises(agentdb.InterfaceError, match="record_class"):
        conn.cursor("SELECT 1", record_class=tuple)
    async with conn.transaction():
        cur = await conn.cursor("SELECT 1")
        with pytest.raises(agentdb.InterfaceError, match="greater than zero"):
            await cur.fetch(0)
        with pytest.raises(TypeError):
            await cur.forward(1.5)  # type: ignore[arg-type]
        with pytest.raises(agentdb.ProgrammingError):
            await conn.cursor("SELECT * FROM no_such_table_for_cursors")
    # the failed DECLARE ended that transaction's block in error; the connection goes on
    assert await conn.fetchval("SELECT 1") == 1


async def test_cursor_after_its_transaction(conn: agentdb.Connection) -> None:
    async with conn.transaction():
        cur = await conn.cursor(SERIES, 5)
    with pytest.raises(agentdb.errors.lookup("34000")):  # invalid cursor name
        await cur.fetch(1)


async def test_several_cursors_at_once(conn: agentdb.Connection) -> None:
    async with conn.transaction():
        a = await conn.cursor(SERIES, 3)
        b = await conn.cursor(SERIES, 3)
        assert (await a.fetchrow())["g"] == 1  # type: ignore[index]
        assert (await b.fetchrow())["g"] == 1  # type: ignore[index]
        assert (await a.fetchrow())["g"] == 2  # type: ignore[index]


async def test_prepared_statement_cursor(conn: agentdb.Connection) -> None:
    st = await conn.prepare(SERIES)
    async with conn.transaction():
        assert [r["g"] async for r in st.cursor(4, prefetch=3)] == [1, 2, 3, 4]
        cur = await st.cursor(4)
        assert [r["g"] for r in await cur.fetch(2)] == [1, 2]


async def test_cursors_leave_the_statement_cache_alone(conn: agentdb.Connection) -> None:
    before = conn._statement_count()
    async with conn.transaction():
        for _ in range(5):
            [r async for r in conn.cursor(SERIES, 3)]
    assert conn._statement_count() == before


async def test_release_closes_a_pooled_connections_cursors(pg_dsn: str) -> None:
    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            cur = await conn.cursor(SERIES, 10)
            await cur.fetch(2)
            assert await conn.fetchval(OPEN_CURSORS) == 1
            # left open: the release rolls back and resets (CLOSE ALL)
        with pytest.raises(agentdb.InterfaceError, match="released back to the pool"):
            await cur.fetch(1)
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval(OPEN_CURSORS) == 0
        assert pool.stats()["session_resets"] >= 1  # DECLARE changed the session
    finally:
        await pool.close()
