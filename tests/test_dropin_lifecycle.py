"""The drop-in engine's life: ``configure()`` on a live engine drains it, and
``create_db_and_tables`` creates a database only when it is missing (SQLSTATE 3D000)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy import event

import agentdb
from agentdb import settings
from agentdb.settings import agentdb_url
from agentdb.testing.cluster import dsn_with_dbname

AdminSQL = Callable[..., list[tuple[str, ...]]]


@pytest.fixture
async def dropin(pg_dsn: str) -> AsyncIterator[str]:
    """The drop-in on the suite's database; closed and its settings forgotten after."""
    url = agentdb_url(pg_dsn)
    settings.configure(database_url=url)
    try:
        yield url
    finally:
        await agentdb.close_db_connection()
        settings.reset()


def backend_alive(admin_sql: AdminSQL, admin_dsn: str, pid: int) -> bool:
    rows = admin_sql(admin_dsn, f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")
    return rows[0][0] == "1"


# -- configure() drains a live engine -----------------------------------------------


async def test_configure_drains_the_live_engine(
    dropin: str, admin_sql: AdminSQL, pg_admin_dsn: str
) -> None:
    async with agentdb.engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE IF EXISTS drain_log"))
        await conn.execute(sa.text("CREATE TABLE drain_log (what text)"))
    insert = sa.text("INSERT INTO drain_log VALUES (:w)")

    held = agentdb.async_session_maker()
    await held.execute(insert, {"w": "before configure"})  # a transaction in progress
    pid = await held.scalar(sa.text("SELECT pg_backend_pid()"))
    old = agentdb.get_engine()
    disposed = asyncio.Event()
    event.listen(old.sync_engine, "engine_disposed", lambda _engine: disposed.set())

    settings.configure(database_url=dropin, pool_size=3)  # a live engine reconfigured

    # New sessions use the new engine.
    async with agentdb.async_session_maker() as s:
        assert s.sync_session.bind is agentdb.get_engine().sync_engine
        assert agentdb.get_engine() is not old
        assert await s.scalar(sa.text("SELECT pg_backend_pid()")) != pid
        await s.execute(insert, {"w": "new engine"})
        await s.commit()
    assert agentdb.get_engine().sync_engine.pool.size() == 3

    # The held session's connection is untouched: it finishes its work and commits.
    await asyncio.sleep(0.2)
    assert not disposed.is_set()
    assert backend_alive(admin_sql, pg_admin_dsn, pid)
    await held.execute(insert, {"w": "after configure"})
    await held.commit()
    await held.close()  # the old engine's last checked-out connection comes back

    await asyncio.wait_for(disposed.wait(), 10)
    for _ in range(100):  # its backend goes away (the server notices the close shortly)
        if not backend_alive(admin_sql, pg_admin_dsn, pid):
            break
        await asyncio.sleep(0.05)
    assert not backend_alive(admin_sql, pg_admin_dsn, pid)
    async with agentdb.async_session_maker() as s:
        rows = (await s.execute(sa.text("SELECT what FROM drain_log ORDER BY what"))).all()
        assert [r[0] for r in rows] == ["after configure", "before configure", "new engine"]
        await s.execute(sa.text("DROP TABLE drain_log"))
        await s.commit()


async def test_configure_disposes_an_idle_engine_at_once(dropin: str) -> None:
    async with agentdb.async_session_maker() as s:
        assert await s.scalar(sa.text("SELECT 1")) == 1
    old = agentdb.get_engine()
    disposed = asyncio.Event()
    event.listen(old.sync_engine, "engine_disposed", lambda _engine: disposed.set())
    settings.configure(database_url=dropin)
    agentdb.get_engine()  # the next use builds the new engine; nothing was checked out
    await asyncio.wait_for(disposed.wait(), 10)


async def test_close_db_connection_closes_a_draining_engine(
    dropin: str, admin_sql: AdminSQL, pg_admin_dsn: str
) -> None:
    held = agentdb.async_session_maker()
    pid = await held.scalar(sa.text("SELECT pg_backend_pid()"))
    settings.configure(database_url=dropin)
    agentdb.get_engine()  # the old engine drains, waiting for `held`
    # shutdown while `held` is still out: the draining engine is closed too, its
    # checked-out connection as it comes back
    closing = asyncio.create_task(agentdb.close_db_connection())
    await asyncio.sleep(0.1)
    assert not closing.done()  # it waits for the draining engine's connection
    assert backend_alive(admin_sql, pg_admin_dsn, pid)
    await held.close()
    await asyncio.wait_for(closing, 30)
    for _ in range(100):
        if not backend_alive(admin_sql, pg_admin_dsn, pid):
            break
        await asyncio.sleep(0.05)
    assert not backend_alive(admin_sql, pg_admin_dsn, pid)


# -- create_db_and_tables: a missing database (3D000) only -------------------------


async def test_create_db_and_tables_creates_a_missing_database(
    pg_dsn: str, pg_admin_dsn: str, admin_sql: AdminSQL
) -> None:
    name = urlsplit(pg_dsn).path.lstrip("/") + "_New-Db"  # needs quoting
    admin_sql(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    metadata = sa.MetaData()
    sa.Table("made_here", metadata, sa.Column("id", sa.Integer, primary_key=True))
    settings.configure(database_url=agentdb_url(dsn_with_dbname(pg_dsn, name)))
    try:
        await agentdb.create_db_and_tables(metadata)
        async with agentdb.engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT current_database()")) == name
            assert await conn.scalar(sa.text("SELECT to_regclass('made_here') IS NOT NULL"))
    finally:
        await agentdb.close_db_connection()
        settings.reset()
        admin_sql(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_create_db_and_tables_missing_role_is_not_a_missing_database(
    pg_dsn: str, pg_admin_dsn: str, admin_sql: AdminSQL, caplog: pytest.LogCaptureFixture
) -> None:
    """A role that does not exist (SQLSTATE 28000, ``role "..." does not exist``) is
    reported as it is: no attempt to create anything, no database created."""
    caplog.set_level(logging.INFO, logger="agentdb")
    name = urlsplit(pg_dsn).path.lstrip("/") + "_noone"
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    ghost = "agentdb_no_such_role"
    url = dsn_with_dbname(pg_dsn, name).replace("postgresql://postgres@", f"postgresql://{ghost}@")
    settings.configure(database_url=agentdb_url(url))
    try:
        with pytest.raises(agentdb.OperationalError, match=f'role "{ghost}" does not exist'):
            await agentdb.create_db_and_tables(sa.MetaData())
    finally:
        await agentdb.close_db_connection()
        settings.reset()
    # one failed attempt, on the database named: the maintenance database was not tried
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failed and all(f"/{name}" in m for m in failed), failed
    assert not admin_sql(pg_admin_dsn, f"SELECT 1 FROM pg_database WHERE datname = '{name}'")


async def test_create_db_and_tables_other_refusals_propagate(
    pg_dsn: str, pg_admin_dsn: str, admin_sql: AdminSQL
) -> None:
    """A database that exists but refuses the connection (here: it does not allow
    connections) is not taken for a missing one."""
    name = urlsplit(pg_dsn).path.lstrip("/") + "_closed"
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin_sql(pg_admin_dsn, f"CREATE DATABASE {name} ALLOW_CONNECTIONS false")
    settings.configure(database_url=agentdb_url(dsn_with_dbname(pg_dsn, name)))
    try:
        with pytest.raises(agentdb.OperationalError, match="not currently accepting connections"):
            await agentdb.create_db_and_tables(sa.MetaData())
    finally:
        await agentdb.close_db_connection()
        settings.reset()
        admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
