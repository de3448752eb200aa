"""The helpers several layers share: one of each, and what it does where the copies differed.

Issue 15 merged copies that had drifted apart; each test here pins the behaviour that was
kept (the commit that merged them says what each copy did).
"""

from __future__ import annotations

import pytest

import agentdb
from agentdb import dsn, settings
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
