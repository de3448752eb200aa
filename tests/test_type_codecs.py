"""set_type_codec / set_builtin_type_codec / reset_type_codec: a connection's own codecs,
text and binary, both ways; errors; and a pooled connection keeps them through releases."""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

import pytest

import agentdb


class Mood(enum.Enum):
    SAD = "sad"
    HAPPY = "happy"


@pytest.fixture
async def mood(conn: agentdb.Connection) -> str:
    await conn.execute("DROP TYPE IF EXISTS pg_temp.mood")
    await conn.execute("CREATE TYPE pg_temp.mood AS ENUM ('sad', 'happy')")
    return await conn.fetchval("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")


async def test_text_codec_both_ways(conn: agentdb.Connection, mood: str) -> None:
    await conn.execute("CREATE TEMP TABLE m (id int, v mood)")
    await conn.execute("INSERT INTO m VALUES (1, 'happy')")
    assert await conn.fetchval("SELECT v FROM m") == "happy"  # before: the text
    await conn.set_type_codec("mood", schema=mood, encoder=lambda m: m.value, decoder=Mood)
    assert await conn.fetchval("SELECT v FROM m") is Mood.HAPPY  # the same cached SQL
    await conn.execute("INSERT INTO m VALUES ($1, $2)", 2, Mood.SAD)
    rows = await conn.fetch("SELECT id, v FROM m ORDER BY id")
    assert [(r["id"], r["v"]) for r in rows] == [(1, Mood.HAPPY), (2, Mood.SAD)]
    assert await conn.fetchval("SELECT $1::mood::text", Mood.HAPPY) == "happy"
    await conn.reset_type_codec("mood", schema=mood)
    assert await conn.fetchval("SELECT v FROM m WHERE id = 2") == "sad"


async def test_binary_codec_overrides_a_builtin(conn: agentdb.Connection) -> None:
    await conn.set_type_codec(
        "int4", schema="pg_catalog", format="binary",
        encoder=lambda v: struct.pack("!i", v * 10),
        decoder=lambda b: ("int4", struct.unpack("!i", b)[0]),
    )
    assert await conn.fetchval("SELECT 7::int4") == ("int4", 7)
    assert await conn.fetchval("SELECT $1::int4 + 1", 4) == ("int4", 41)
    assert await conn.fetchval("SELECT 7::int8") == 7  # other types keep theirs


async def test_json_text_codec(conn: agentdb.Connection) -> None:
    seen: list[str] = []

    def loads(text: str) -> Any:
        seen.append(text)
        return json.loads(text)

    await conn.set_type_codec("json", schema="pg_catalog", encoder=json.dumps, decoder=loads)
    assert await conn.fetchval("SELECT $1::json", {"a": [1, 2]}) == {"a": [1, 2]}
    assert seen == ['{"a": [1, 2]}']


async def test_errors(conn: agentdb.Connection, mood: str) -> None:
    with pytest.raises(ValueError, match="unknown type: public.nosuchtype"):
        await conn.set_type_codec("nosuchtype", encoder=str, decoder=str)
    with pytest.raises(agentdb.NotSupportedError, match="tuple"):
        await conn.set_type_codec("mood", schema=mood, encoder=str, decoder=str, format="tuple")
    with pytest.raises(ValueError, match="format must be"):
        await conn.set_type_codec("mood", schema=mood, encoder=str, decoder=str, format="xml")
    with pytest.raises(ValueError, match="unknown codec_name: pg_catalog.nosuch"):
        await conn.set_builtin_type_codec("mood", schema=mood, codec_name="nosuch")
    await conn.set_type_codec("mood", schema=mood, encoder=lambda m: 42, decoder=str)
    with pytest.raises(agentdb.DataError, match=r"query argument \$1: .*returned int, not str"):
        await conn.fetchval("SELECT $1::mood", Mood.SAD)

    def broken(text: str) -> Any:
        raise ZeroDivisionError("decoder broke")

    await conn.set_type_codec("mood", schema=mood, encoder=lambda m: m.value, decoder=broken)
    with pytest.raises(ZeroDivisionError, match="decoder broke"):
        await conn.fetchval("SELECT 'sad'::mood")
    assert await conn.fetchval("SELECT 1") == 1


async def test_builtin_codec_for_another_type(conn: agentdb.Connection) -> None:
    # a composite's text form as text: it comes back as its text (a str), not a Record
    await conn.execute("CREATE TEMP TABLE pair (a int, b text)")
    schema = await conn.fetchval("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")
    await conn.set_builtin_type_codec("pair", schema=schema, codec_name="text")
    assert await conn.fetchval("SELECT ROW(1, 'x')::pair") == "(1,x)"
    assert await conn.fetchval("SELECT ($1::pair).b", "(2,y)") == "y"


async def test_a_pooled_connection_keeps_its_codecs(pg_dsn: str) -> None:
    async with await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0) as pool:
        async with pool.acquire() as c:
            await c.set_type_codec(
                "int2", schema="pg_catalog", encoder=str, decoder=lambda t: f"<{t}>"
            )
            await c.execute("SET work_mem = '8MB'")  # the release resets the session
        async with pool.acquire() as c:
            assert await c.fetchval("SELECT 5::int2") == "<5>"
        assert await pool.fetchval("SELECT 6::int2") == "<6>"
