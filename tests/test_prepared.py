"""conn.prepare() and PreparedStatement, as asyncpg's: the statement described without
being run, its parameter and column types, its executions through the statement cache,
explain(), and its validity tied to its connection's borrower."""

from __future__ import annotations

import pytest

import agentdb
from agentdb.types import Attribute, Type


async def test_prepare_describes_parameters_and_columns(conn: agentdb.Connection) -> None:
    st = await conn.prepare(
        "SELECT $1::int8 + 1 AS n, $2::text AS t, ARRAY[$1::int4] AS a, now() AS ts"
    )
    assert st.get_query().startswith("SELECT $1::int8")
    params = st.get_parameters()
    assert [p.name for p in params] == ["int8", "text"]
    assert params[0] == Type(20, "int8", "scalar", "pg_catalog")
    attrs = st.get_attributes()
    assert [a.name for a in attrs] == ["n", "t", "a", "ts"]
    assert attrs[2] == Attribute("a", Type(1007, "_int4", "array", "pg_catalog"))
    assert attrs[3].type.name == "timestamptz"
    assert st.get_statusmsg() is None  # nothing ran yet


async def test_prepare_runs_nothing(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE prep_runs (v int)")
    st = await conn.prepare("INSERT INTO prep_runs VALUES ($1) RETURNING v")
    assert await conn.fetchval("SELECT count(*) FROM prep_runs") == 0
    assert [a.name for a in st.get_attributes()] == ["v"]
    assert await st.fetchval(7) == 7
    assert st.get_statusmsg() == "INSERT 0 1"
    assert await conn.fetchval("SELECT count(*) FROM prep_runs") == 1


async def test_prepared_statement_methods(conn: agentdb.Connection) -> None:
    st = await conn.prepare("SELECT g, g * $2::int AS twice FROM generate_series(1, $1::int) g")
    rows = await st.fetch(3, 2)
    assert [tuple(r) for r in rows] == [(1, 2), (2, 4), (3, 6)]
    assert st.get_statusmsg() == "SELECT 3"
    row = await st.fetchrow(3, 10)
    assert row is not None and row["twice"] == 10
    assert await st.fetchrow(0, 1) is None
    assert await st.fetchval(2, 5) == 1
    assert await st.fetchval(2, 5, column=1) == 5
    assert await st.fetchval(0, 5) is None
    with pytest.raises(agentdb.InterfaceError, match="column 2 does not exist"):
        await st.fetchval(1, 1, column=2)
    many = await st.fetchmany([(1, 3), (2, 4)])
    assert [tuple(r) for r in many] == [(1, 3), (1, 4), (2, 8)]


async def test_prepared_executemany(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE prep_many (v int)")
    st = await conn.prepare("INSERT INTO prep_many VALUES ($1)")
    await st.executemany([(1,), (2,), (3,)])
    assert await conn.fetchval("SELECT sum(v) FROM prep_many") == 6


async def test_prepare_warms_the_statement_cache(conn: agentdb.Connection) -> None:
    await conn.prepare("SELECT 1::int4")  # int4's description, looked up once per connection
    before = conn._statement_count()
    st = await conn.prepare("SELECT $1::int AS warm")
    assert conn._statement_count() == before + 1
    # its executions reuse it: no statement added
    assert await st.fetchval(1) == 1
    assert await conn.fetchval("SELECT $1::int AS warm", 2) == 2
    assert conn._statement_count() == before + 1
    # preparing the same text again costs no new statement either
    await conn.prepare("SELECT $1::int AS warm")
    assert conn._statement_count() == before + 1


async def test_prepare_without_a_statement_cache(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, statement_cache_size=0)
    try:
        st = await conn.prepare("SELECT $1::int4 AS v")
        assert [p.name for p in st.get_parameters()] == ["int4"]
        assert await st.fetchval(5) == 5
        assert conn._statement_count() == 0
        # nothing named was left on the server
        assert await conn.fetchval("SELECT count(*) FROM pg_prepared_statements") == 0
    finally:
        await conn.close()


async def test_prepare_errors(conn: agentdb.Connection) -> None:
    with pytest.raises(agentdb.ProgrammingError):
        await conn.prepare("SELECT * FROM no_such_table_at_all")
    with pytest.raises(TypeError):
        await conn.prepare(b"SELECT 1")  # type: ignore[arg-type]
    with pytest.raises(agentdb.InterfaceError, match="record_class"):
        await conn.prepare("SELECT 1", record_class=dict)
    st = await conn.prepare("SELECT 1", record_class=agentdb.Record)
    assert await st.fetchval() == 1
    # the connection still works, in order
    assert await conn.fetchval("SELECT 2") == 2


async def test_prepare_of_a_statement_without_rows(conn: agentdb.Connection) -> None:
    st = await conn.prepare("SET LOCAL statement_timeout = 0")
    assert st.get_attributes() == ()
    assert st.get_parameters() == ()


async def test_prepare_keeps_the_connection_order(conn: agentdb.Connection) -> None:
    # issued after a CREATE that is still in flight: described after it ran
    create = conn.execute("CREATE TEMP TABLE prep_order (v int)")
    st = await conn.prepare("SELECT v FROM prep_order")
    await create
    assert [a.name for a in st.get_attributes()] == ["v"]


async def test_explain(conn: agentdb.Connection) -> None:
    st = await conn.prepare("SELECT g FROM generate_series(1, $1::int) g")
    plan = await st.explain(5)
    assert isinstance(plan, list)
    assert plan[0]["Plan"]["Node Type"] == "Function Scan"
    assert "Actual Rows" not in plan[0]["Plan"]
    analyzed = await st.explain(5, analyze=True)
    assert analyzed[0]["Plan"]["Actual Rows"] == 5


async def test_explain_analyze_changes_nothing(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE prep_explain (v int)")
    st = await conn.prepare("INSERT INTO prep_explain VALUES ($1)")
    await st.explain(1, analyze=True)
    assert await conn.fetchval("SELECT count(*) FROM prep_explain") == 0
    assert not conn.is_in_transaction()
    # inside a transaction of the caller's: a savepoint, the transaction goes on
    async with conn.transaction():
        await conn.execute("INSERT INTO prep_explain VALUES (10)")
        await st.explain(2, analyze=True)
        assert await conn.fetchval("SELECT array_agg(v) FROM prep_explain") == [10]
    assert await conn.fetchval("SELECT count(*) FROM prep_explain") == 1


async def test_explain_without_json_decoding(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, decode_json=False)
    try:
        st = await conn.prepare("SELECT 1")
        plan = await st.explain()
        assert plan[0]["Plan"]["Node Type"] == "Result"
    finally:
        await conn.close()


async def test_statement_survives_a_schema_change(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE prep_stale (a int)")
    st = await conn.prepare("SELECT * FROM prep_stale")
    await conn.execute("ALTER TABLE prep_stale ADD COLUMN b int")
    await conn.execute("INSERT INTO prep_stale VALUES (1, 2)")
    row = await st.fetchrow()  # prepared again by the cache, as any statement
    assert row is not None and tuple(row) == (1, 2)


async def test_prepared_statement_of_a_released_connection(pg_dsn: str) -> None:
    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0)
    try:
        async with pool.acquire() as conn:
            st = await conn.prepare("SELECT $1::int")
            assert await st.fetchval(1) == 1
            cur = st.cursor(1)
        for call in (st.fetch(1), st.fetchrow(1), st.fetchval(1), st.explain(1)):
            with pytest.raises(agentdb.InterfaceError, match="released back to the pool"):
                await call
        with pytest.raises(agentdb.InterfaceError, match="released back to the pool"):
            await st.executemany([(1,)])
        with pytest.raises(agentdb.InterfaceError, match="released back to the pool"):
            st.cursor(1)
        with pytest.raises(agentdb.InterfaceError, match="released back to the pool"):
            await cur
        # the connection's next borrower is unaffected, and may prepare it again
        async with pool.acquire() as conn2:
            st2 = await conn2.prepare("SELECT $1::int")
            assert await st2.fetchval(2) == 2
    finally:
        await pool.close()


async def test_prepared_statement_of_a_closed_connection(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    st = await conn.prepare("SELECT 1")
    await conn.close()
    with pytest.raises(agentdb.InterfaceError, match="closed"):
        await st.fetch()
