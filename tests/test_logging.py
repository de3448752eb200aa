"""The ``agentdb`` logger: connection events, slow queries, the DEBUG echo, hidden secrets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa

import agentdb
from agentdb import logs, settings
from agentdb.settings import agentdb_url
from agentdb.testing.cluster import free_port

SECRET = "Tr0ub4dor-secret"


def agentdb_lines(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "agentdb" and (level is None or r.levelno == level)
    ]


def with_password(dsn: str) -> str:
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)


async def test_connect_logs_at_info_without_password(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentdb")
    conn = await agentdb.connect(with_password(pg_dsn), timeout=10)
    pid = conn.get_backend_pid()
    await conn.close()
    lines = agentdb_lines(caplog, logging.INFO)
    assert any(
        "connected to postgres@127.0.0.1:" in m and f"pid {pid}" in m and "tls off" in m
        for m in lines
    ), lines
    assert SECRET not in caplog.text


async def test_failed_connect_logs_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agentdb")
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(agentdb.OperationalError):
        await agentdb.connect(url, timeout=5)
    assert any("failed: OperationalError" in m for m in agentdb_lines(caplog, logging.INFO))
    assert SECRET not in caplog.text


async def test_pool_created_and_closed(pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agentdb")
    pool = await agentdb.create_pool(with_password(pg_dsn), pool_size=2, min_size=1)
    await pool.fetchval("SELECT 1")
    await pool.close()
    lines = agentdb_lines(caplog, logging.INFO)
    assert any(m.startswith("pool created: pool_size=2") for m in lines), lines
    assert any(m.startswith("pool closed: 1 connections opened") for m in lines), lines
    assert SECRET not in caplog.text


async def test_nothing_logged_above_debug_when_quiet(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentdb")
    conn = await agentdb.connect(pg_dsn, timeout=10)
    await conn.close()
    assert agentdb_lines(caplog) == []


@pytest.fixture
async def configure(pg_dsn: str) -> AsyncIterator[Callable[..., None]]:
    def apply(**kw: Any) -> None:
        settings.configure(database_url=agentdb_url(with_password(pg_dsn)), **kw)

    try:
        yield apply
    finally:
        await agentdb.close_db_connection()
        settings.reset()
        logging.getLogger("agentdb").setLevel(logging.NOTSET)


async def test_debug_echo_at_debug(
    configure: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentdb")
    configure(debug=True)
    async with agentdb.async_session_maker() as s:
        assert await s.scalar(sa.text("SELECT CAST(:x AS int) + 1"), {"x": 41}) == 42
    debug = agentdb_lines(caplog, logging.DEBUG)
    assert any("SELECT CAST" in m and "41" in m and " ms)" in m for m in debug), debug
    assert not any("SELECT CAST" in m for m in agentdb_lines(caplog, logging.INFO))
    assert SECRET not in caplog.text


async def test_debug_sets_the_logger_level_when_unset(configure: Callable[..., None]) -> None:
    log = logging.getLogger("agentdb")
    log.setLevel(logging.NOTSET)
    configure(debug=True)
    agentdb.get_engine()
    assert log.level == logging.DEBUG


async def test_parameters_hidden(
    configure: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentdb")
    configure(debug=True, log_parameters=False)
    async with agentdb.async_session_maker() as s:
        assert await s.scalar(sa.text("SELECT CAST(:x AS text)"), {"x": "card-4242"}) == (
            "card-4242"
        )
        with pytest.raises(sa.exc.DBAPIError) as err:
            await s.execute(sa.text("SELECT length(:x) / 0"), {"x": "card-4242"})
    # SQLAlchemy's error text leaves them out too
    assert "parameters hidden" in str(err.value) and "card-4242" not in str(err.value)
    debug = agentdb_lines(caplog, logging.DEBUG)
    assert any(logs.HIDDEN in m and "SELECT CAST" in m for m in debug), debug
    assert "card-4242" not in caplog.text


async def test_slow_query_warning(
    configure: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentdb")
    configure(slow_query_ms=50)
    async with agentdb.async_session_maker() as s:
        await s.execute(sa.text("SELECT 1"))
        assert agentdb_lines(caplog, logging.WARNING) == []
        await s.execute(sa.text("SELECT pg_sleep(:t)"), {"t": 0.1})
    warnings = agentdb_lines(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("slow query (") and "over 50 ms" in warnings[0]
    assert "pg_sleep" in warnings[0] and "0.1" in warnings[0]


async def test_slow_query_warning_hides_parameters(
    configure: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentdb")
    configure(slow_query_ms=10, log_parameters=False)
    async with agentdb.async_session_maker() as s:
        await s.execute(sa.text("SELECT pg_sleep(:t), :x"), {"t": 0.05, "x": "ssn-123"})
    (line,) = agentdb_lines(caplog, logging.WARNING)
    assert logs.HIDDEN in line and "ssn-123" not in line


async def test_password_literal_masked(
    configure: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentdb")
    configure(debug=True)
    async with agentdb.async_session_maker() as s:
        await s.execute(sa.text(f"CREATE ROLE agentdb_log_test_role PASSWORD '{SECRET}'"))
        await s.rollback()
    assert any("PASSWORD '***'" in m for m in agentdb_lines(caplog, logging.DEBUG))
    assert SECRET not in caplog.text


def test_redact_and_format_helpers() -> None:
    assert logs.redact_sql("ALTER ROLE a PASSWORD 'x''y' VALID UNTIL 'z'") == (
        "ALTER ROLE a PASSWORD '***' VALID UNTIL 'z'"
    )
    assert logs.format_params({"a": 1}, False) == logs.HIDDEN
    long = logs.format_params(["x" * 5000], True)
    assert len(long) < 1100 and long.endswith("chars)")
    assert (
        logs.describe_target(
            {"host": "db", "port": "5433", "user": "u", "dbname": "d", "password": "p"}
        )
        == "u@db:5433/d"
    )


def test_settings_from_environ() -> None:
    s = settings.from_environ({"AGENTDB_SLOW_QUERY_MS": "250", "AGENTDB_LOG_PARAMETERS": "false"})
    assert s.slow_query_ms == 250.0 and s.log_parameters is False
    d = settings.from_environ({})
    assert d.slow_query_ms == 0.0 and d.log_parameters is True
