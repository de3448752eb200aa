"""Adversity: behind PgBouncer in transaction mode (scenario 19).

Debian's pgbouncer (``apt-get install pgbouncer``; .ci/setup.sh installs it), started by
the test on a free port with a generated ini, 3 server connections for many clients.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from faults.checks import settle
from faults.pgbouncer import PgBouncer, find_pgbouncer

import agentdb
from agentdb import errors


@pytest.fixture(scope="module")
def pgbouncer(pg_dsn: str) -> Iterator[tuple[PgBouncer, str]]:
    if find_pgbouncer() is None:
        pytest.fail("pgbouncer is not installed: apt-get install pgbouncer", pytrace=False)
    parts = urlsplit(pg_dsn)
    b = PgBouncer(parts.hostname or "127.0.0.1", parts.port or 5432, pool_size=3).start()
    try:
        yield b, b.url(parts.path.lstrip("/"))
    finally:
        b.stop()


async def test_transaction_mode_with_the_statement_cache_off(
    pgbouncer: tuple[PgBouncer, str],
) -> None:
    _, url = pgbouncer
    pool = await agentdb.create_pool(url, pool_size=10, min_size=10, statement_cache_size=0)
    try:
        outs = await asyncio.gather(
            *(pool.fetchval("SELECT $1::int + 1", i % 7) for i in range(300))
        )
        assert outs == [i % 7 + 1 for i in range(300)]

        async def tx(i: int) -> int:
            async with pool.acquire() as c, c.transaction():
                await c.execute("CREATE TEMP TABLE IF NOT EXISTS bx (v int) ON COMMIT DROP")
                await c.executemany("INSERT INTO bx VALUES ($1)", [(i,), (i + 1,)])
                return int(await c.fetchval("SELECT sum(v) FROM bx"))

        sums = await asyncio.gather(*(tx(i) for i in range(50)))
        assert sums == [2 * i + 1 for i in range(50)]
        with pytest.raises(errors.DivisionByZero):
            await pool.fetchval("SELECT 1 / $1::int", 0)
        assert await pool.fetchval("SELECT 'fine'") == "fine"
        await settle(pool)
    finally:
        await pool.close(timeout=5)


async def test_transaction_mode_with_the_statement_cache_on(
    pgbouncer: tuple[PgBouncer, str],
) -> None:
    """What users get today with the default statement cache behind a transaction-mode
    pooler: some statements fail with DuplicatePreparedStatement (42P05) /
    InvalidSqlStatementName (26000), the rest work, the pool survives. The error's hint says
    what to do (tests/test_adv_core_fixes.py)."""
    _, url = pgbouncer
    pool = await agentdb.create_pool(url, pool_size=10, min_size=10)
    try:
        outs = await asyncio.gather(
            *(pool.fetchval("SELECT $1::int + 1", i % 7) for i in range(300)),
            return_exceptions=True,
        )
        failures = collections.Counter(
            type(o).__name__ for o in outs if isinstance(o, BaseException)
        )
        print(f"pgbouncer, statement cache on: {sum(failures.values())}/300 failed: "
              f"{dict(failures)}")
        for o in outs:
            if isinstance(o, BaseException):
                assert isinstance(
                    o, (errors.DuplicatePreparedStatement, errors.InvalidSqlStatementName)
                ), repr(o)
            else:
                assert isinstance(o, int)
        await settle(pool)
        # the pool is still usable for statements without parameters
        assert await pool.execute("SELECT 1") in ("SELECT 1",)
    finally:
        await pool.close(timeout=5)
