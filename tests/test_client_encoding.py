"""client_encoding: UTF8 on every connection, whatever the database or settings say."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import create_async_engine

import agentdb
import agentdb.sqlalchemy  # noqa: F401  (registers postgresql+agentdb)
from agentdb import errors, settings
from agentdb.settings import agentdb_url
from agentdb.testing.cluster import dsn_with_dbname

AdminSQL = Callable[..., list[tuple[str, ...]]]

# Per process: other runs of the suite may share the server.
LATIN1_DB = f"agentdb_latin1_{os.getpid()}"
DBSET_DB = f"agentdb_dbset_enc_{os.getpid()}"
ROLE = f"agentdb_enc_role_{os.getpid()}"

# Every LATIN1 letter above ASCII, and text with them.
HIGH_LATIN1 = "".join(chr(i) for i in range(160, 256))
SAMPLE = "café, crème brûlée, Ærø, naïve, ß, ÿ"


def _latin1_hex(text: str) -> str:
    return text.encode("latin-1").hex()


@pytest.fixture(scope="module")
def latin1_dsn(pg_dsn: str, pg_admin_dsn: str, admin_sql: AdminSQL) -> Iterator[str]:
    """A database in LATIN1 (C collation), dropped after the module."""
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {LATIN1_DB} WITH (FORCE)")
    admin_sql(
        pg_admin_dsn,
        f"CREATE DATABASE {LATIN1_DB} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0",
    )
    try:
        yield dsn_with_dbname(pg_dsn, LATIN1_DB)
    finally:
        admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {LATIN1_DB} WITH (FORCE)")


@pytest.fixture
async def lconn(latin1_dsn: str) -> AsyncIterator[agentdb.Connection]:
    c = await agentdb.connect(latin1_dsn, timeout=10)
    try:
        yield c
    finally:
        await c.close()


async def _assert_utf8(conn: agentdb.Connection) -> None:
    assert conn.get_parameter_status("client_encoding") == "UTF8"
    assert await conn.fetchval("SHOW client_encoding") == "UTF8"
    assert await conn.fetchval("SELECT chr(233)") == "é"


# -- a LATIN1 database ---------------------------------------------------------


async def test_server_made_text_decodes(lconn: agentdb.Connection) -> None:
    assert lconn.get_parameter_status("server_encoding") == "LATIN1"
    await _assert_utf8(lconn)
    assert await lconn.fetchval("SELECT 'é'::text") == "é"
    assert await lconn.fetchval(f"SELECT '{SAMPLE}'") == SAMPLE
    made = await lconn.fetchval(
        "SELECT string_agg(chr(i), '' ORDER BY i) FROM generate_series(160, 255) i"
    )
    assert made == HIGH_LATIN1
    date_text = await lconn.fetchval("""SELECT to_char(date '2024-08-15', '"août" DD, YYYY')""")
    assert date_text == "août 15, 2024"
    row = await lconn.fetchrow('SELECT 1 AS "façade", chr(255) AS "ÿ"')
    assert row is not None and dict(row) == {"façade": 1, "ÿ": "ÿ"}
    # names the server keeps in its catalogs, in LATIN1
    await lconn.execute('CREATE TEMP TABLE "tablé_ñ" ("colonne_é" int)')
    assert await lconn.fetchval(
        "SELECT relname::text FROM pg_class WHERE relname LIKE 'tabl%\\_ñ'"
    ) == "tablé_ñ"


async def test_server_error_and_notice_text_decodes(lconn: agentdb.Connection) -> None:
    with pytest.raises(errors.UndefinedTable) as info:
        await lconn.fetch('SELECT * FROM "relâche_absente"')
    assert 'relation "relâche_absente" does not exist' in str(info.value)
    with pytest.raises(errors.RaiseException) as raised:
        await lconn.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'déjà vu: %', chr(255) "
            "USING DETAIL = 'détail ñ', HINT = 'conseil ç'; END $$"
        )
    e = raised.value
    assert e.server_message == "déjà vu: ÿ"
    assert e.detail == "détail ñ" and e.hint == "conseil ç"
    notices: list[Any] = []
    lconn.add_log_listener(lambda _c, msg: notices.append(msg))
    await lconn.execute("DO $$ BEGIN RAISE NOTICE 'avis: %', chr(233) || chr(240); END $$")
    assert [n.server_message for n in notices] == ["avis: éð"]


async def test_parameters_round_trip_and_are_stored_as_latin1(
    lconn: agentdb.Connection, latin1_dsn: str, admin_sql: AdminSQL
) -> None:
    table = f"enc_params_{os.getpid()}"
    await lconn.execute(f"DROP TABLE IF EXISTS {table}")
    await lconn.execute(f"CREATE TABLE {table} (id int, s text, a text[], j jsonb, v varchar(40))")
    try:
        await lconn.execute(
            f"INSERT INTO {table} VALUES (1, $1, $2, $3, $4)",
            SAMPLE, ["é", "ÿ"], {"clé": "valeur é"}, "ñandú",
        )
        await lconn.executemany(
            f"INSERT INTO {table} (id, s) VALUES ($1, $2)", [(2, HIGH_LATIN1), (3, "ü")]
        )
        row = await lconn.fetchrow(f"SELECT s, a, j, v FROM {table} WHERE id = 1")
        assert row is not None
        assert tuple(row) == (SAMPLE, ["é", "ÿ"], {"clé": "valeur é"}, "ñandú")
        assert await lconn.fetchval(f"SELECT s FROM {table} WHERE id = $1", 2) == HIGH_LATIN1
        assert await lconn.fetchval(f"SELECT id FROM {table} WHERE s = $1", "ü") == 3
        # one byte per letter in the database, the right LATIN1 bytes (read through psql)
        assert await lconn.fetchval(f"SELECT octet_length(s) FROM {table} WHERE id = 1") == len(
            SAMPLE
        )
        stored = admin_sql(
            latin1_dsn,
            f"SELECT id, encode(convert_to(s, 'LATIN1'), 'hex') FROM {table} "
            "WHERE id IN (1, 2) ORDER BY id",
        )
        assert stored == [("1", _latin1_hex(SAMPLE)), ("2", _latin1_hex(HIGH_LATIN1))]
    finally:
        await lconn.execute(f"DROP TABLE IF EXISTS {table}")


async def test_unrepresentable_character_raises_the_servers_error(
    lconn: agentdb.Connection,
) -> None:
    await lconn.execute("CREATE TEMP TABLE unrep (s text)")
    for value in ("あ", "price: 5 €", "snowman ☃"):
        with pytest.raises(errors.UntranslatableCharacter) as info:
            await lconn.execute("INSERT INTO unrep VALUES ($1)", value)
        assert info.value.sqlstate == "22P05"
    with pytest.raises(errors.UntranslatableCharacter):
        await lconn.fetchval("SELECT 'あ'::text")
    assert await lconn.fetchval("SELECT count(*) FROM unrep") == 0
    await _assert_utf8(lconn)  # the connection goes on


# -- the environment, role and database settings cannot change it --------------


async def test_pgclientencoding_in_the_environment_is_overridden(
    latin1_dsn: str, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    for dsn in (latin1_dsn, pg_dsn):
        conn = await agentdb.connect(dsn, timeout=10)
        try:
            await _assert_utf8(conn)
            assert await conn.fetchval("SELECT $1::text", SAMPLE) == SAMPLE
        finally:
            await conn.close()


@pytest.fixture(scope="module")
def latin1_role(latin1_dsn: str, pg_admin_dsn: str, admin_sql: AdminSQL) -> Iterator[str]:
    """A login role whose own setting says client_encoding LATIN1 (trust auth)."""
    admin_sql(pg_admin_dsn, f"DROP ROLE IF EXISTS {ROLE}")
    admin_sql(pg_admin_dsn, f"CREATE ROLE {ROLE} LOGIN")
    try:
        admin_sql(pg_admin_dsn, f"ALTER ROLE {ROLE} SET client_encoding = 'LATIN1'")
        yield ROLE
    finally:
        admin_sql(pg_admin_dsn, f"DROP ROLE IF EXISTS {ROLE}")


async def test_role_setting_is_overridden(
    latin1_dsn: str, latin1_role: str, admin_sql: AdminSQL
) -> None:
    # the setting is there: psql, which sends no client_encoding here, gets it
    assert admin_sql(
        latin1_dsn.replace("postgres@", f"{latin1_role}@", 1), "SHOW client_encoding"
    ) == [("LATIN1",)]
    conn = await agentdb.connect(latin1_dsn, user=latin1_role, timeout=10)
    try:
        assert await conn.fetchval("SELECT current_user") == latin1_role
        await _assert_utf8(conn)
        # the startup packet's value (source "client") outranks the role's ("user")
        assert await conn.fetchval(
            "SELECT source FROM pg_settings WHERE name = 'client_encoding'"
        ) == "client"
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def dbset_dsn(pg_dsn: str, pg_admin_dsn: str, admin_sql: AdminSQL) -> Iterator[str]:
    """A LATIN1 database whose own setting says client_encoding LATIN1."""
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {DBSET_DB} WITH (FORCE)")
    admin_sql(
        pg_admin_dsn,
        f"CREATE DATABASE {DBSET_DB} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
        "TEMPLATE template0",
    )
    try:
        admin_sql(pg_admin_dsn, f"ALTER DATABASE {DBSET_DB} SET client_encoding = 'LATIN1'")
        yield dsn_with_dbname(pg_dsn, DBSET_DB)
    finally:
        admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {DBSET_DB} WITH (FORCE)")


async def test_database_setting_is_overridden(dbset_dsn: str, admin_sql: AdminSQL) -> None:
    assert admin_sql(dbset_dsn, "SHOW client_encoding") == [("LATIN1",)]
    conn = await agentdb.connect(dbset_dsn, timeout=10)
    try:
        await _assert_utf8(conn)
        assert await conn.fetchval("SELECT $1::text", SAMPLE) == SAMPLE
        assert await conn.fetchval(
            "SELECT source FROM pg_settings WHERE name = 'client_encoding'"
        ) == "client"
    finally:
        await conn.close()


# -- asking for another encoding is a clear error -----------------------------


def _with_query(dsn: str, query: str) -> str:
    return dsn + ("&" if "?" in dsn else "?") + query


def _keyword_value(dsn: str) -> str:
    from urllib.parse import urlsplit

    p = urlsplit(dsn)
    return (
        f"host={p.hostname} port={p.port or 5432} user={p.username or 'postgres'} "
        f"dbname={p.path.lstrip('/')}"
    )


REQUESTS: list[tuple[str, Callable[[str], tuple[str | None, dict[str, Any]]]]] = [
    ("keyword", lambda d: (d, {"client_encoding": "LATIN1"})),
    ("keyword lower case", lambda d: (d, {"client_encoding": "latin1"})),
    ("keyword auto", lambda d: (d, {"client_encoding": "auto"})),
    ("URL query", lambda d: (_with_query(d, "client_encoding=LATIN1"), {})),
    ("keyword/value string", lambda d: (_keyword_value(d) + " client_encoding=LATIN1", {})),
    ("server_settings", lambda d: (d, {"server_settings": {"client_encoding": "LATIN1"}})),
    ("server_settings upper", lambda d: (d, {"server_settings": {"CLIENT_ENCODING": "WIN1252"}})),
    ("options -c", lambda d: (d, {"options": "-c client_encoding=LATIN1"})),
    ("options -c joined", lambda d: (d, {"options": "-c geqo=off -cclient_encoding=SQL_ASCII"})),
    ("options --name", lambda d: (d, {"options": "--client-encoding=LATIN1"})),
    (
        "options in the URL",
        lambda d: (_with_query(d, "options=" + quote("-c client_encoding=LATIN1")), {}),
    ),
    (
        "options in kw string",
        lambda d: (_keyword_value(d) + " options='-c client_encoding=LATIN1'", {}),
    ),
]


@pytest.mark.parametrize("make", [m for _, m in REQUESTS], ids=[n for n, _ in REQUESTS])
async def test_asking_for_another_encoding_is_a_clear_error(
    latin1_dsn: str, make: Callable[[str], tuple[str | None, dict[str, Any]]]
) -> None:
    dsn, kwargs = make(latin1_dsn)
    with pytest.raises(agentdb.InterfaceError) as info:
        conn = await agentdb.connect(dsn, timeout=10, **kwargs)
        await conn.close()  # (today's code connects)
    text = str(info.value)
    assert "client_encoding" in text and "UTF-8" in text and "agentdb" in text
    with pytest.raises(agentdb.InterfaceError, match="client_encoding"):
        await agentdb.create_pool(dsn, min_size=1, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_encoding": "UTF8"},
        {"client_encoding": "utf8"},
        {"client_encoding": "UTF-8"},
        {"client_encoding": "unicode"},
        {"client_encoding": "Unicode"},
        {"server_settings": {"client_encoding": "utf-8"}},
        {"options": "-c client_encoding=UNICODE"},
        {"client_encoding": ""},  # empty: not set, as libpq reads it
    ],
    ids=["UTF8", "utf8", "UTF-8", "unicode", "Unicode", "server_settings", "options", "empty"],
)
async def test_utf8_spellings_are_accepted(latin1_dsn: str, kwargs: dict[str, Any]) -> None:
    conn = await agentdb.connect(latin1_dsn, timeout=10, **kwargs)
    try:
        await _assert_utf8(conn)
    finally:
        await conn.close()


async def test_sqlalchemy_url_asking_for_another_encoding_is_a_clear_error(
    latin1_dsn: str,
) -> None:
    for query in ("client_encoding=LATIN1", "options=" + quote("-c client_encoding=LATIN1")):
        engine = create_async_engine(_with_query(agentdb_url(latin1_dsn), query))
        try:
            with pytest.raises(sa_exc.DBAPIError) as info:
                async with engine.connect() as c:
                    await c.execute(sa.text("SELECT 1"))
            assert isinstance(info.value.orig, agentdb.InterfaceError)
            assert "client_encoding" in str(info.value) and "UTF-8" in str(info.value)
        finally:
            await engine.dispose()


async def test_dropin_url_asking_for_another_encoding_is_a_clear_error(
    latin1_dsn: str,
) -> None:
    settings.configure(database_url=_with_query(latin1_dsn, "client_encoding=LATIN1"))
    try:
        pool = await agentdb.get_pool()
        with pytest.raises(agentdb.InterfaceError, match="client_encoding.*UTF-8"):
            await pool.fetchval("SELECT 1")
        with pytest.raises(sa_exc.DBAPIError) as info:
            async with agentdb.async_session_maker() as session:
                await session.execute(sa.text("SELECT 1"))
        assert isinstance(info.value.orig, agentdb.InterfaceError)
        assert await agentdb.check_database_connection(timeout=5) is False
    finally:
        await agentdb.close_db_connection()
        settings.reset()


# -- the pool, SQLAlchemy, the drop-in and COPY on the LATIN1 database ----------


async def test_pool_on_a_latin1_database(
    latin1_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    pool = await agentdb.create_pool(latin1_dsn, pool_size=3, max_overflow=0, min_size=2)
    try:
        assert await pool.fetchval("SELECT chr(233) || $1::text", "ñ") == "éñ"
        async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
            for conn in (a, b, c):
                await _assert_utf8(conn)
        rows = await pool.fetch("SELECT chr(i) FROM generate_series(250, 255) i ORDER BY i")
        assert [r[0] for r in rows] == list("úûüýþÿ")
    finally:
        await pool.close()


async def test_sqlalchemy_engine_on_a_latin1_database(latin1_dsn: str) -> None:
    meta = sa.MetaData()
    table = sa.Table(
        f"enc_sa_{os.getpid()}",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(60)),
    )
    engine = create_async_engine(agentdb_url(latin1_dsn), pool_size=2)
    try:
        async with engine.begin() as c:
            await c.run_sync(meta.drop_all)
            await c.run_sync(meta.create_all)
            await c.execute(table.insert(), [{"id": 1, "name": SAMPLE}, {"id": 2, "name": "ÿ"}])
        async with engine.connect() as c:
            assert (await c.execute(sa.text("SELECT chr(233)"))).scalar_one() == "é"
            assert (await c.execute(sa.text("SHOW client_encoding"))).scalar_one() == "UTF8"
            names = (await c.execute(sa.select(table.c.name).order_by(table.c.id))).scalars()
            assert list(names) == [SAMPLE, "ÿ"]
            hexed = await c.execute(
                sa.select(sa.func.encode(sa.func.convert_to(table.c.name, "LATIN1"), "hex"))
                .where(table.c.id == 1)
            )
            assert hexed.scalar_one() == _latin1_hex(SAMPLE)
            found = await c.execute(sa.select(table.c.id).where(table.c.name == "ÿ"))
            assert found.scalar_one() == 2
        async with engine.connect() as c:
            with pytest.raises(sa_exc.DBAPIError) as info:
                await c.execute(table.insert(), {"id": 3, "name": "あ"})
            assert getattr(info.value.orig, "sqlstate", None) == "22P05"
    finally:
        async with engine.begin() as c:
            await c.run_sync(meta.drop_all)
        await engine.dispose()


async def test_dropin_on_a_latin1_database(latin1_dsn: str) -> None:
    settings.configure(database_url=latin1_dsn, pool_size=2, max_overflow=0)
    try:
        async with agentdb.async_session_maker() as session:
            got = await session.execute(sa.text("SELECT chr(233) || CAST(:v AS text)"), {"v": "ü"})
            assert got.scalar_one() == "éü"
        pool = await agentdb.get_pool()
        assert await pool.fetchval("SHOW client_encoding") == "UTF8"
        assert await agentdb.check_database_connection() is True
    finally:
        await agentdb.close_db_connection()
        settings.reset()


async def test_copy_on_a_latin1_database(
    lconn: agentdb.Connection, latin1_dsn: str, admin_sql: AdminSQL
) -> None:
    table = f"enc_copy_{os.getpid()}"
    await lconn.execute(f"DROP TABLE IF EXISTS {table}")
    await lconn.execute(f"CREATE TABLE {table} (id int, s text, v varchar(40))")
    try:
        # binary COPY (the default for these types)
        tag = await lconn.copy_records_to_table(
            table, records=[(1, SAMPLE, "ñ"), (2, HIGH_LATIN1, None)]
        )
        assert tag == "COPY 2"
        # text COPY, data the caller wrote in UTF-8
        await lconn.copy_to_table(table, source="3\tdéjà\tç\n".encode())
        stored = admin_sql(
            latin1_dsn,
            f"SELECT id, encode(convert_to(s, 'LATIN1'), 'hex') FROM {table} ORDER BY id",
        )
        assert stored == [
            ("1", _latin1_hex(SAMPLE)),
            ("2", _latin1_hex(HIGH_LATIN1)),
            ("3", _latin1_hex("déjà")),
        ]
        out = await lconn.copy_from_query(f"SELECT id, s, v FROM {table} ORDER BY id")
        assert out.decode("utf-8") == (
            f"1\t{SAMPLE}\tñ\n2\t{HIGH_LATIN1}\t\\N\n3\tdéjà\tç\n"
        )
        csv = await lconn.copy_from_query("SELECT chr(233), 'ÿ'", format="csv")
        assert csv == "é,ÿ\n".encode()
        with pytest.raises(errors.UntranslatableCharacter):
            await lconn.copy_records_to_table(table, records=[(4, "あ", None)])
        assert await lconn.fetchval(f"SELECT count(*) FROM {table}") == 3
    finally:
        await lconn.execute(f"DROP TABLE IF EXISTS {table}")
