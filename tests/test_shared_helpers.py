"""The helpers several layers share: one of each, and what it does where the copies differed.

Issue 15 merged copies that had drifted apart; each test here pins the behaviour that was
kept (the commit that merged them says what each copy did).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import agentdb
from agentdb import cli, dsn, settings
from agentdb.testing import plugin

# -- the scheme of a PostgreSQL URL: agentdb.dsn.split_url / normalize_url ---------------


@pytest.mark.parametrize(
    ("url", "libpq"),
    [
        ("postgresql://u:p@h:5/d?sslmode=disable", "postgresql://u:p@h:5/d?sslmode=disable"),
        ("postgres://u:p@h:5/d", "postgres://u:p@h:5/d"),
        ("postgresql+asyncpg://u:p@h:5/d", "postgresql://u:p@h:5/d"),
        ("postgres+psycopg://h/d", "postgres://h/d"),
        ("postgresql+psycopg2://h/d", "postgresql://h/d"),
        # schemes are case-insensitive (RFC 3986), libpq's are not: one spelling for libpq
        ("POSTGRESQL+AsyncPG://u:p@h:5/d", "postgresql://u:p@h:5/d"),
        ("Postgres://h/d", "postgres://h/d"),
        ("  postgresql+agentdb://h/d\n", "postgresql://h/d"),
    ],
)
def test_one_scheme_rule_for_the_driver_the_drop_in_and_the_plugin(url: str, libpq: str) -> None:
    assert dsn.normalize_url(url) == libpq
    assert plugin.libpq_url(url) == libpq
    rest = libpq.split("://", 1)[1]
    assert settings.agentdb_url(url) == "postgresql+agentdb://" + rest


@pytest.mark.parametrize(
    "text", ["host=h dbname=d", "dbname=postgresql+asyncpg://x", "mysql+pymysql://h/d"]
)
def test_what_is_not_a_postgres_url_is_left_to_libpq(text: str) -> None:
    assert dsn.split_url(text) is None
    assert dsn.normalize_url(text) == text
    with pytest.raises(ValueError, match="postgres"):
        settings.agentdb_url(text)


async def test_connect_takes_a_scheme_in_any_case(pg_dsn: str) -> None:
    """The drop-in always took ``DATABASE_URL=Postgresql+asyncpg://...``; ``connect()`` (and
    so ``python -m agentdb check`` on the same variable) gave libpq's 'missing "="'."""
    assert pg_dsn.startswith("postgresql://")
    conn = await agentdb.connect("POSTGRESQL+asyncpg://" + pg_dsn[len("postgresql://") :])
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


# -- secrets in connection strings: agentdb.dsn.hide_password / scrub_dsn -----------------


@pytest.mark.parametrize(
    ("shown", "hidden"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        # only the password's place: a user called like the password stays readable
        (
            "postgresql://postgres:postgres@localhost/agentplatform",
            "postgresql://postgres:***@localhost/agentplatform",
        ),
        ("postgresql+psycopg2://u:s3cret@h/d", "postgresql+psycopg2://u:***@h/d"),
        ("postgresql://u:p%2bw@h/d", "postgresql://u:***@h/d"),
        ("postgresql://u@h/d?password=s3cret&sslmode=require", "postgresql://u@h/d?password=***&sslmode=require"),  # noqa: E501
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("postgresql://u:@h/d", "postgresql://u:@h/d"),
        ("postgresql://[::1]:5432/d", "postgresql://[::1]:5432/d"),
        ("host=h password=s3cret dbname=d", "host=h password=*** dbname=d"),
        ("host=h password = 's3 cr\\'et' dbname=d", "host=h password = *** dbname=d"),
        ("host=h sslpassword=keypass password=s3cret", "host=h sslpassword=*** password=***"),
        ("host=h dbname=d", "host=h dbname=d"),
    ],
)
def test_hide_password_masks_each_secret_in_its_place(shown: str, hidden: str) -> None:
    assert dsn.hide_password(shown) == hidden
    assert settings.hide_password(shown) == hidden  # the name examples and users import


@pytest.mark.parametrize(
    ("written", "password"),
    [
        ("postgresql://u:p%40ss@h/d", "p@ss"),
        ("postgresql://u@h/d?password=s3cret&sslmode=require", "s3cret"),
        ("host=h sslpassword=keypass password=s3cret", "s3cret"),
        ("host=h password='a \\'b'", "a 'b"),
        ("host=h", None),
    ],
)
def test_find_password(written: str, password: str | None) -> None:
    assert dsn.find_password(written) == password


def test_scrub_dsn_catches_every_form_of_the_secret() -> None:
    """libpq echoes a malformed URI as written: ``%2b`` in lower case is not what
    ``quote()`` makes of ``+``, so scrubbing the decoded password alone let it through."""
    url = "postgresql://u:p%2bw-Secret@[::1/x"
    echoed = f'error in URI: "{url}"; password p+w-Secret, quoted p%2Bw-Secret'
    scrubbed = dsn.scrub_dsn(echoed, url)
    assert "Secret" not in scrubbed
    assert scrubbed.count(dsn.TEXT_MASK) == 3
    kv = "host=h sslpassword=key-Secret password='pw Secret'"
    assert "Secret" not in dsn.scrub_dsn(f"{kv} / key-Secret / pw Secret", kv)


def test_parse_error_never_echoes_a_percent_encoded_password() -> None:
    with pytest.raises(agentdb.InterfaceError) as info:
        dsn.parse("postgresql://u:p%2bw-Secret@[::1/x", {})
    assert "Secret" not in str(info.value) and "[::1/x" in str(info.value)


def test_settings_repr_and_cli_show_urls_the_same_way() -> None:
    url = "postgresql+asyncpg://app:s3cret@db/app?sslpassword=keypass"
    r = repr(settings.Settings(database_url=url))
    assert "database_url='postgresql+asyncpg://app:***@db/app?sslpassword=***'" in r
    assert "s3cret" not in r and "keypass" not in r


async def test_cli_check_hides_a_keyword_value_password() -> None:
    """``check --url 'host=... password=...'``: the settings' copy knew URLs only and
    printed this password back."""
    result = await cli.check("host=127.0.0.1 port=1 user=u password=kv-Secret", timeout=2)
    assert result["ok"] is False
    assert result["url"] == "host=127.0.0.1 port=1 user=u password=***"
    assert "kv-Secret" not in str(result)


# -- the MetaData a "module:attr" names: agentdb.database.load_metadata --------------------


def test_load_metadata_one_lookup_for_the_cli_and_the_plugin() -> None:
    """The CLI and the plugin had a copy each; they differed only in how they fail (kept:
    ValueError for the CLI, which prints it; pytest.UsageError for an ini option)."""
    from sqlmodel import SQLModel

    from agentdb import database

    for load in (database.load_metadata, cli.load_metadata, plugin.load_metadata):
        assert load("sqlmodel:SQLModel") is SQLModel.metadata  # follows .metadata
        assert load("sqlmodel:SQLModel.metadata") is SQLModel.metadata
        with pytest.raises(ModuleNotFoundError):
            load("no_such_module_xyz:meta")
    for spec, message in (("nocolon", "module:attr"), ("os:path", "not a SQLAlchemy MetaData")):
        with pytest.raises(ValueError, match=message):
            database.load_metadata(spec)
        with pytest.raises(ValueError, match=message):
            cli.load_metadata(spec)
        with pytest.raises(pytest.UsageError, match=f"agentdb_metadata: .*{message}"):
            plugin.load_metadata(spec)


def test_cli_load_metadata_imports_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the CLI adds to the shared lookup, as uvicorn does: ``init-db models:meta``
    run from the project's directory finds ``models.py`` there."""
    models = "from sqlalchemy import MetaData\nmeta = MetaData()\n"
    (tmp_path / "cli_cwd_models.py").write_text(models)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cli_cwd_models", raising=False)
    assert cli.load_metadata("cli_cwd_models:meta").tables == {}
    assert sys.path[0] == str(tmp_path)


# -- BEGIN and quoted identifiers: agentdb._sql ------------------------------------------


@pytest.mark.parametrize(
    ("args", "sql"),
    [
        ((), "BEGIN"),
        (("read_committed",), "BEGIN ISOLATION LEVEL READ COMMITTED"),
        (("repeatable_read", True), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        (
            ("serializable", True, True),
            "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE",
        ),
        ((None, False, True), "BEGIN DEFERRABLE"),
    ],
)
def test_begin_sql(args: tuple[object, ...], sql: str) -> None:
    from agentdb._sql import begin_sql

    assert begin_sql(*args) == sql  # type: ignore[arg-type]


def test_one_table_of_isolation_levels() -> None:
    """Transaction and the dialect's adapter each had the table and a BEGIN builder (the
    same text); the dialect had the table a third time, reversed."""
    from agentdb._sql import ISOLATION_LEVELS
    from agentdb.sqlalchemy.dialect import AgentdbDialect

    dialect = AgentdbDialect()
    assert dialect.get_isolation_level_values(None) == [
        "AUTOCOMMIT",
        "READ COMMITTED",
        "READ UNCOMMITTED",
        "REPEATABLE READ",
        "SERIALIZABLE",
    ]
    assert {dialect._isolation_lookup[sql] for sql in ISOLATION_LEVELS.values()} == set(
        ISOLATION_LEVELS
    )
    with pytest.raises(ValueError, match="isolation must be one of"):
        agentdb.Transaction(None, isolation="chaos")  # type: ignore[arg-type]


_MODES_SQL = (
    "SELECT current_setting('transaction_isolation'), "
    "current_setting('transaction_read_only'), current_setting('transaction_deferrable')"
)


async def test_native_and_dialect_transactions_begin_alike(pg_dsn: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    conn = await agentdb.connect(pg_dsn)
    try:
        async with conn.transaction(isolation="serializable", readonly=True, deferrable=True):
            native = tuple(await conn.fetchrow(_MODES_SQL))
    finally:
        await conn.close()
    engine = create_async_engine(settings.agentdb_url(pg_dsn), isolation_level="SERIALIZABLE")
    try:
        async with engine.connect() as c:
            c = await c.execution_options(postgresql_readonly=True, postgresql_deferrable=True)
            dialect = tuple((await c.execute(sa.text(_MODES_SQL))).one())
    finally:
        await engine.dispose()
    assert native == dialect == ("serializable", "on", "on")


def test_quote_ident() -> None:
    from agentdb._sql import qualified, quote_ident

    assert quote_ident('We"ird name') == '"We""ird name"'
    assert qualified("t", None) == '"t"'
    assert qualified("t", "S") == '"S"."t"'
