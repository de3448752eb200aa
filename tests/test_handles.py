"""Every libpq handle has one owner and is freed once: PGconn and PGresult counts return to
where they were after connections, pools, errors, cancellations, COPY and killed backends."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

import agentdb
from agentdb import _core


async def _exercise(pg_dsn: str, admin_sql: Any) -> None:
    conn = await agentdb.connect(pg_dsn)
    await conn.execute("CREATE TEMP TABLE h (id int primary key)")
    await conn.executemany("INSERT INTO h VALUES ($1)", [(i,) for i in range(100)])
    await conn.fetch("SELECT * FROM h")
    with pytest.raises(agentdb.IntegrityError):
        await conn.execute("INSERT INTO h VALUES (1)")
    with pytest.raises(TimeoutError):
        await conn.fetchval("SELECT pg_sleep(5)", timeout=0.05)
    await asyncio.gather(*(conn.fetchval("SELECT $1::int", i) for i in range(50)))
    await conn.copy_records_to_table("h", records=[(1000 + i,) for i in range(100)])
    await conn.copy_from_table("h")
    await conn.close()
    with pytest.raises(agentdb.Error):
        await agentdb.connect(pg_dsn + "_no_such_db", timeout=5)
    pool = await agentdb.create_pool(pg_dsn, pool_size=3, application_name="handles_t")
    await asyncio.gather(*(pool.fetchval("SELECT 1") for _ in range(100)))
    async with pool.acquire() as c:
        task = asyncio.ensure_future(c.fetchval("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.1)
        admin_sql(pg_dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'handles_t' AND state = 'active'")
        with pytest.raises(agentdb.OperationalError):
            await task
    await pool.close()


async def test_libpq_handles_are_freed_once(pg_dsn: str, admin_sql: Any) -> None:
    gc.collect()
    before = _core._handle_counts()
    assert before[1] == 0  # no PGresult outlives the read that produced it
    await _exercise(pg_dsn, admin_sql)
    await asyncio.sleep(0.1)
    gc.collect()
    assert _core._handle_counts() == before
