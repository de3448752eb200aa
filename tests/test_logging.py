"""The ``agentdb`` logger (connection events, slow queries), the DEBUG echo (SQLAlchemy's),
hidden parameters and secrets."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

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


# -- DEBUG=true: SQLAlchemy's echo, as the seed's engine(echo=True) --------------------

ECHO_SCRIPT = """
import asyncio, sys
import sqlalchemy as sa
import agentdb

async def main():
    async for s in agentdb.get_session():
        n = await s.scalar(sa.text("SELECT length(CAST(:x AS text)) + 1"), {"x": "card-4242"})
        print("RESULT", n)
        await s.execute(sa.text("CREATE ROLE agentdb_echo_role PASSWORD 'SECRET'"))
        await s.rollback()
    print("ECHO", agentdb.engine.echo)
    await agentdb.close_db_connection()

if len(sys.argv) > 1:  # the application configured logging of its own
    import logging
    logging.basicConfig(level=logging.DEBUG, format="%(name)s|%(message)s")
asyncio.run(main())
""".replace("SECRET", SECRET)

# SQLAlchemy's echo format: "%(asctime)s %(levelname)s %(name)s %(message)s"
SA_LINE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO sqlalchemy\.engine\.Engine "


def run_echo_script(pg_dsn: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDB_LOG")}
    environ.update(DATABASE_URL=with_password(pg_dsn), DEBUG="true", **env)
    out = subprocess.run(
        [sys.executable, "-c", ECHO_SCRIPT, *args],
        env=environ,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out


def test_debug_shows_each_statement_as_sqlalchemy_echo_does(pg_dsn: str) -> None:
    out = run_echo_script(pg_dsn)
    assert "RESULT 10" in out.stdout and "ECHO True" in out.stdout
    text = out.stdout
    # on the terminal, with no logging configured: SQLAlchemy's own handler, its format
    assert re.search(SA_LINE + r"BEGIN \(implicit\)$", text, re.M), text
    assert re.search(SA_LINE + r"SELECT length\(CAST\(\$1 AS text\)\) \+ 1$", text, re.M), text
    assert re.search(SA_LINE + r"\[generated in \d+\.\d+s\] \('card-4242',\)$", text, re.M), text
    assert re.search(SA_LINE + r"ROLLBACK$", text, re.M), text
    # never a password: neither the URL's nor a PASSWORD literal
    assert "PASSWORD '***'" in text, text
    assert SECRET not in out.stdout + out.stderr
    assert out.stderr == "", out.stderr  # nothing else: no agentdb lines


def test_debug_echo_hides_parameters_when_asked(pg_dsn: str) -> None:
    out = run_echo_script(pg_dsn, AGENTDB_LOG_PARAMETERS="false")
    assert "RESULT 10" in out.stdout
    assert "[SQL parameters hidden due to hide_parameters=True]" in out.stdout, out.stdout
    assert "card-4242" not in out.stdout + out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_debug_echo_is_not_doubled_by_agentdb_lines(pg_dsn: str) -> None:
    """With the application's own logging at DEBUG, the statements come from SQLAlchemy's
    logger (as with the seed's engine), never a second time from agentdb's."""
    out = run_echo_script(pg_dsn, "basicConfig")
    lines = out.stderr.splitlines()
    assert any(
        line.startswith("sqlalchemy.engine.Engine|SELECT length") for line in lines
    ), out.stderr
    assert not any(line.startswith("agentdb|") and "SELECT" in line for line in lines), lines
    assert SECRET not in out.stdout + out.stderr


async def echo_of_a_session(engine: Any, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What SQLAlchemy's echo logs for DDL, a batch insert, a commit, a streamed select
    and a failed statement on ``engine``, with the timings taken out."""
    caplog.clear()
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE IF EXISTS echo_seen"))
        await conn.execute(sa.text("CREATE TABLE echo_seen (id serial PRIMARY KEY, v text)"))
    async with maker() as s:
        await s.execute(sa.text("INSERT INTO echo_seen (v) VALUES (:v)"), [{"v": "a"}, {"v": "b"}])
        await s.commit()
        result = await s.stream(sa.text("SELECT v FROM echo_seen WHERE v > :v"), {"v": ""})
        assert [v async for v in result.scalars()] == ["a", "b"]
    async with maker() as s:
        with pytest.raises(sa.exc.DBAPIError):
            await s.execute(sa.text("SELECT 1 / 0"))
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE echo_seen"))
    timing = re.compile(r"\[(generated in|cached since) [^\]]*\]")
    return [
        timing.sub("[timing]", r.getMessage())
        for r in caplog.records
        if r.name == logs.ECHO_LOGGER
    ]


async def test_debug_echo_shows_what_the_seeds_engine_shows(
    configure: Callable[..., None], pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Statement for statement, the DEBUG echo on agentdb is the echo of the seed's engine
    (``postgresql+asyncpg``, ``echo=True``): agentdb's pipelined BEGIN, its adapter and
    its pool run nothing that SQLAlchemy shows differently or not at all."""
    caplog.set_level(logging.INFO, logger=logs.ECHO_LOGGER)
    seed_engine = create_async_engine(
        pg_dsn.replace("postgresql://", "postgresql+asyncpg://", 1), echo=True, pool_pre_ping=True
    )
    try:
        theirs = await echo_of_a_session(seed_engine, caplog)
    finally:
        await seed_engine.dispose()
    configure(debug=True)
    ours = await echo_of_a_session(agentdb.engine, caplog)
    assert "BEGIN (implicit)" in ours and "COMMIT" in ours and "ROLLBACK" in ours
    assert any(m.startswith("INSERT INTO echo_seen") for m in ours), ours
    assert ours == theirs, (ours, theirs)


async def test_engine_echo_reports_debug(configure: Callable[..., None]) -> None:
    configure(debug=True)
    assert agentdb.engine.echo is True and agentdb.get_engine().echo is True
    configure(debug=False)
    assert not agentdb.engine.echo


async def test_parameters_hidden_in_errors(
    configure: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    configure(log_parameters=False)
    async with agentdb.async_session_maker() as s:
        with pytest.raises(sa.exc.DBAPIError) as err:
            await s.execute(sa.text("SELECT length(:x) / 0"), {"x": "card-4242"})
    # SQLAlchemy's error text leaves them out (hide_parameters=True)
    assert "parameters hidden" in str(err.value) and "card-4242" not in str(err.value)


async def test_parameters_shown_in_errors_by_default(configure: Callable[..., None]) -> None:
    configure()
    async with agentdb.async_session_maker() as s:
        with pytest.raises(sa.exc.DBAPIError) as err:
            await s.execute(sa.text("SELECT length(:x) / 0"), {"x": "card-4242"})
    assert "card-4242" in str(err.value)  # as SQLAlchemy shows them by default


async def test_password_literal_masked_in_echo(
    configure: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=logs.ECHO_LOGGER)
    configure(debug=True)
    async with agentdb.async_session_maker() as s:
        await s.execute(sa.text(f"CREATE ROLE agentdb_log_test_role PASSWORD '{SECRET}'"))
        await s.rollback()
    echoed = [r.getMessage() for r in caplog.records if r.name == logs.ECHO_LOGGER]
    assert any("PASSWORD '***'" in m for m in echoed), echoed
    assert SECRET not in caplog.text


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
