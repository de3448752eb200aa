"""connect(decode_json=False): json and jsonb come back as their text, as asyncpg returns them."""

from __future__ import annotations

import json

import agentdb

ROW_SQL = """SELECT '{"a": 1}'::jsonb AS jb, '[1, 2]'::json AS js,
                    ARRAY['{"b": 2}'::jsonb, NULL] AS jba, ARRAY['3'::json] AS jsa,
                    NULL::jsonb AS nothing"""


async def test_default_parses_json(conn: agentdb.Connection) -> None:
    row = await conn.fetchrow(ROW_SQL)
    assert row["jb"] == {"a": 1}
    assert row["js"] == [1, 2]
    assert row["jba"] == [{"b": 2}, None]
    assert row["jsa"] == [3]
    assert row["nothing"] is None


async def test_decode_json_false_returns_text(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, decode_json=False)
    try:
        for _ in range(2):  # the first run prepares, the second uses the cached statement
            row = await conn.fetchrow(ROW_SQL)
            assert row["jb"] == '{"a": 1}'  # jsonb's own text form
            assert row["js"] == "[1, 2]"  # json keeps the text as stored
            assert row["jba"] == ['{"b": 2}', None]
            assert row["jsa"] == ["3"]
            assert row["nothing"] is None
        # Parameters are unaffected: a dict is still sent as JSON.
        assert json.loads(await conn.fetchval("SELECT $1::jsonb", {"x": [1]})) == {"x": [1]}
        # Text-format results (simple protocol, several statements) follow it as well.
        await conn.execute("CREATE TEMP TABLE dj (j jsonb); INSERT INTO dj VALUES ('{}')")
        assert await conn.fetchval("SELECT j FROM dj") == "{}"
    finally:
        await conn.close()


async def test_switching_applies_to_cached_statements(conn: agentdb.Connection) -> None:
    sql = "SELECT '{\"k\": true}'::jsonb"
    assert await conn.fetchval(sql) == {"k": True}
    conn._configure(100, 0.0, 5.0, True)
    assert await conn.fetchval(sql) == '{"k": true}'
    conn._configure(100, 0.0, 5.0, False)
    assert await conn.fetchval(sql) == {"k": True}


async def test_pool_passes_decode_json(pg_dsn: str) -> None:
    pool = await agentdb.create_pool(pg_dsn, min_size=1, pool_size=2, decode_json=False)
    try:
        assert await pool.fetchval("SELECT '[true]'::jsonb") == "[true]"
    finally:
        await pool.close()
