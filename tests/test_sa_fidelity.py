"""Where ``postgresql+agentdb`` behaved unlike ``postgresql+asyncpg`` in SQLAlchemy's own
tests (``compliance/sa_tests.sh``): arrays of types the core has no element codec for
come back as lists, JSON parameters carry their cast, errors have ``pgcode``, and
``create_async_engine(..., async_creator=...)`` connects through the creator."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import agentdb
import agentdb.sqlalchemy  # noqa: F401
from agentdb._core import parse_array
from agentdb.settings import agentdb_url
from agentdb.sqlalchemy import AgentdbDialect


@pytest.fixture
async def engine(pg_dsn: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(agentdb_url(pg_dsn), pool_size=2)
    try:
        yield eng
    finally:
        await eng.dispose()


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def _created(engine: AsyncEngine, md: sa.MetaData) -> AsyncIterator[None]:
    """``md``'s tables for the block, dropped afterwards."""
    async with engine.begin() as c:
        await c.run_sync(md.create_all)
    try:
        yield
    finally:
        async with engine.begin() as c:
            await c.run_sync(md.drop_all)


# -- arrays ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("'{192.168.1.1,NULL,10.0.0.0/8}'::inet[]", ["192.168.1.1", None, "10.0.0.0/8"]),
        ("'{10.0.0.0/8}'::cidr[]", ["10.0.0.0/8"]),
        ("'{1.5,-2}'::money[]", ["$1.50", "-$2.00"]),
        ("'{08:00:2b:01:02:03}'::macaddr[]", ["08:00:2b:01:02:03"]),
        ("'{{101,010}}'::varbit[]", [["101", "010"]]),
        ("'{\"[1,5)\",empty}'::int4range[]", ["[1,5)", "empty"]),
        # box's text holds commas: box[] separates its elements with ';'
        ("ARRAY['((1,1),(0,0))'::box, '((3,3),(2,2))']", ["(1,1),(0,0)", "(3,3),(2,2)"]),
        ("'{}'::inet[]", []),
    ],
)
async def test_arrays_without_an_element_codec_decode_to_lists(
    conn: Any, sql: str, expected: list[Any]
) -> None:
    assert await conn.fetchval(f"SELECT {sql}") == expected


async def test_text_array_types_still_decode_their_elements(conn: Any) -> None:
    # the int4 array keeps its decoder; int2vector (not an array literal) stays text
    assert await conn.fetchval("SELECT '{1,2}'::int4[]") == [1, 2]
    assert await conn.fetchval("SELECT '1 2'::int2vector") == "1 2"


def test_parse_array() -> None:
    assert parse_array('{a,"b,c","NULL",NULL,"q\\"x"}') == ["a", "b,c", "NULL", None, 'q"x']
    assert parse_array("{{1,2},{3,4}}") == [["1", "2"], ["3", "4"]]
    assert parse_array("[0:1]={x,y}") == ["x", "y"]
    assert parse_array("{}") == []
    with pytest.raises(TypeError, match="parse_array.. takes a str, not bytes"):
        parse_array(b"{a}")  # type: ignore[arg-type]
    with pytest.raises(agentdb.errors.DataError, match="invalid array"):
        parse_array("{a,")


async def test_sa_arrays_of_inet_cidr_money_are_lists(engine: AsyncEngine) -> None:
    md = sa.MetaData()
    t = sa.Table(
        _name("fid_arr"),
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ips", pg.ARRAY(pg.INET)),
        sa.Column("nets", pg.ARRAY(pg.CIDR)),
        sa.Column("cash", pg.ARRAY(pg.MONEY)),
        sa.Column("grid", pg.ARRAY(pg.INET, dimensions=2)),
    )
    async with _created(engine, md):
        async with engine.begin() as c:
            await c.execute(
                t.insert(),
                {
                    "id": 1,
                    "ips": ["127.0.0.1", "::1"],
                    "nets": ["10.0.0.0/8"],
                    "cash": ["12.5"],
                    "grid": [["1.1.1.1", "2.2.2.2"], ["3.3.3.3", "4.4.4.4"]],
                },
            )
            row = (await c.execute(sa.select(t))).one()
        assert row.ips == ["127.0.0.1", "::1"]
        assert row.nets == ["10.0.0.0/8"]
        assert row.cash == ["$12.50"]
        assert row.grid == [["1.1.1.1", "2.2.2.2"], ["3.3.3.3", "4.4.4.4"]]


async def test_sa_arrays_of_types_known_only_by_name_are_lists(
    engine: AsyncEngine, pg_dsn: str
) -> None:
    """hstore[] and an enum's array have OIDs of the database's own: they arrive as text,
    and the dialect's ARRAY parses them (hstore elements then become dicts)."""
    async with engine.begin() as c:
        await c.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS hstore")
    mood = pg.ENUM("happy", "sad", "it's, \"odd\"", name=_name("fid_mood"))
    md = sa.MetaData()
    t = sa.Table(
        _name("fid_named"),
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("h", pg.ARRAY(pg.HSTORE)),
        sa.Column("m", pg.ARRAY(mood)),
    )
    async with engine.begin() as c:
        await c.run_sync(md.create_all)
    try:
        async with engine.begin() as c:
            await c.execute(
                t.insert(),
                {"id": 1, "h": [{"a": "1"}, {"b": 'x,"y"'}], "m": ["sad", "it's, \"odd\""]},
            )
            row = (await c.execute(sa.select(t))).one()
        assert row.h == [{"a": "1"}, {"b": 'x,"y"'}]
        assert row.m == ["sad", "it's, \"odd\""]
    finally:
        async with engine.begin() as c:
            await c.run_sync(md.drop_all)
            await c.run_sync(lambda sc: mood.drop(sc, checkfirst=True))


# -- JSON parameters --------------------------------------------------------------------


@pytest.mark.parametrize("json_type", [sa.JSON, pg.JSON, pg.JSONB])
async def test_json_parameters_are_cast(engine: AsyncEngine, json_type: Any) -> None:
    """Outside a column's context (VALUES in UPDATE ... FROM) the server cannot infer
    json: without the cast, 'column "j" is of type json but expression is of type text'."""
    md = sa.MetaData()
    t = sa.Table(
        _name("fid_json"),
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("j", json_type),
    )
    async with _created(engine, md):
        v = sa.values(sa.column("id", sa.Integer), sa.column("j", json_type), name="v").data(
            [(1, {"a": [1, 2]}), (2, {"b": None})]
        )
        stmt = t.update().values(j=v.c.j).where(t.c.id == v.c.id)
        assert "::JSON" in str(stmt.compile(dialect=AgentdbDialect())).upper()
        async with engine.begin() as c:
            await c.execute(t.insert(), [{"id": 1, "j": {}}, {"id": 2, "j": {}}])
            await c.execute(stmt)
            rows = (await c.execute(sa.select(t.c.j).order_by(t.c.id))).scalars().all()
        assert rows == [{"a": [1, 2]}, {"b": None}]


# -- errors -----------------------------------------------------------------------------


async def test_errors_have_pgcode(engine: AsyncEngine) -> None:
    md = sa.MetaData()
    t = sa.Table(_name("fid_uq"), md, sa.Column("id", sa.Integer, primary_key=True))
    async with _created(engine, md):
        with pytest.raises(sa_exc.IntegrityError) as info:
            async with engine.begin() as c:
                await c.execute(t.insert(), [{"id": 1}, {"id": 1}])
        assert info.value.orig.pgcode == "23505"  # type: ignore[union-attr]
        assert info.value.orig.sqlstate == "23505"  # type: ignore[union-attr]


def test_pgcode_follows_sqlstate() -> None:
    assert agentdb.errors.UniqueViolation("made by hand").pgcode == "23505"
    assert agentdb.errors.Error("no code").pgcode is None
    e = agentdb.errors.Error("x")
    e.sqlstate = "XX000"
    assert e.pgcode == "XX000"
    with pytest.raises(AttributeError):
        e.pgcode = "42P01"  # type: ignore[misc]


# -- async_creator ----------------------------------------------------------------------


async def test_async_creator_is_used_to_connect(pg_dsn: str) -> None:
    """The URL's options are not passed to the driver: here its host does not even
    resolve, and every connection comes from the creator."""
    made: list[agentdb.Connection] = []

    async def creator() -> agentdb.Connection:
        conn = await agentdb.connect(pg_dsn, timeout=10)
        made.append(conn)
        return conn

    eng = create_async_engine(
        "postgresql+agentdb://nobody:secret@host.invalid:1/nodb", async_creator=creator
    )
    try:
        async with eng.connect() as c:
            assert await c.scalar(sa.select(sa.literal(1))) == 1
            raw = await c.get_raw_connection()
            assert raw.driver_connection in made
        assert made
    finally:
        await eng.dispose()
    for conn in made:
        await conn.close()


async def test_async_creator_must_return_an_agentdb_connection() -> None:
    async def creator() -> object:
        return object()

    eng = create_async_engine("postgresql+agentdb://u@host.invalid/d", async_creator=creator)
    try:
        with pytest.raises(TypeError, match="async_creator must return an agentdb.Connection"):
            async with eng.connect():
                pass
    finally:
        await eng.dispose()
