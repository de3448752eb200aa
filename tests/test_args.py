"""The core's method arguments: one rule for timeout= and column= everywhere, unknown
keywords refused by name (src/args.c)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import agentdb


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[agentdb.Pool]:
    p = await agentdb.create_pool(pg_dsn, pool_size=2, max_overflow=0)
    try:
        yield p
    finally:
        await p.close(timeout=5)


def statement_methods(
    conn: agentdb.Connection, pool: agentdb.Pool
) -> dict[str, Callable[..., Awaitable[Any]]]:
    return {
        "conn.execute": conn.execute,
        "conn.fetch": conn.fetch,
        "conn.fetchrow": conn.fetchrow,
        "conn.fetchval": conn.fetchval,
        "pool.execute": pool.execute,
        "pool.fetch": pool.fetch,
        "pool.fetchrow": pool.fetchrow,
        "pool.fetchval": pool.fetchval,
    }


@pytest.mark.parametrize("bad", [0, -1, 0.0, -0.5, math.nan, math.inf])
async def test_timeout_must_be_positive_everywhere(
    conn: agentdb.Connection, pool: agentdb.Pool, bad: float
) -> None:
    for method in statement_methods(conn, pool).values():
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            await method("SELECT 1", timeout=bad)
    for call in (
        lambda: conn._query("SELECT 1", (), timeout=bad),
        lambda: conn.executemany("SELECT $1::int", [(1,)], timeout=bad),
        lambda: conn._copy("COPY (SELECT 1) TO STDOUT", None, timeout=bad),
        lambda: conn._reset_session(timeout=bad),
        lambda: conn.close(timeout=bad),
        lambda: pool.acquire(timeout=bad),
    ):
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            call()
    assert await conn.fetchval("SELECT 1") == 1  # nothing was queued


async def test_timeout_must_be_a_number(conn: agentdb.Connection, pool: agentdb.Pool) -> None:
    for method in statement_methods(conn, pool).values():
        with pytest.raises(TypeError, match="timeout must be a number of seconds or None"):
            await method("SELECT 1", timeout="5")


async def test_timeout_none_and_positive_are_taken(
    conn: agentdb.Connection, pool: agentdb.Pool
) -> None:
    for method in statement_methods(conn, pool).values():
        await method("SELECT 1", timeout=None)
        await method("SELECT 1", timeout=2)
        await method("SELECT 1", timeout=2.5)
    async with pool.acquire(timeout=None) as c, pool.acquire(timeout=1) as c2:
        assert c is not c2


@pytest.mark.parametrize("column", [-1, 1600, 10**30])
async def test_column_range(conn: agentdb.Connection, pool: agentdb.Pool, column: int) -> None:
    for fetchval in (conn.fetchval, pool.fetchval):
        with pytest.raises(ValueError, match="column must be an int from 0 to 1599"):
            await fetchval("SELECT 1", column=column)


async def test_column_type_and_use(conn: agentdb.Connection, pool: agentdb.Pool) -> None:
    for fetchval in (conn.fetchval, pool.fetchval):
        with pytest.raises(TypeError, match="column must be an int"):
            await fetchval("SELECT 1", column=1.0)
        assert await fetchval("SELECT 1, 2", column=1) == 2
    for name, method in statement_methods(conn, pool).items():
        if not name.endswith("fetchval"):
            with pytest.raises(TypeError, match="unexpected keyword argument 'column'"):
                await method("SELECT 1", column=0)


async def test_unknown_keywords_are_refused_by_name(
    conn: agentdb.Connection, pool: agentdb.Pool
) -> None:
    for name, method in statement_methods(conn, pool).items():
        short = name.split(".")[1]
        unexpected = rf"{short}\(\) got an unexpected keyword argument 'tmeout'"
        with pytest.raises(TypeError, match=unexpected):
            await method("SELECT 1", tmeout=1)
    with pytest.raises(TypeError, match="acquire\\(\\) got an unexpected keyword argument 'x'"):
        pool.acquire(x=1)
    c = await pool.acquire()
    with pytest.raises(TypeError, match="release\\(\\) got an unexpected keyword argument 'x'"):
        await pool.release(c, x=1)
    await pool.release(c, timeout=5)  # asyncpg's argument, accepted
    with pytest.raises(TypeError, match="close\\(\\) got an unexpected keyword argument 'x'"):
        await conn.close(x=1)


async def test_query_must_be_a_str(conn: agentdb.Connection, pool: agentdb.Pool) -> None:
    for method in statement_methods(conn, pool).values():
        with pytest.raises(TypeError, match="the query must be a str, not bytes"):
            await method(b"SELECT 1")
        with pytest.raises(TypeError, match="missing the query"):
            await method()
