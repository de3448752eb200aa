"""A short tour of agentdb's native API: connect, write, read, a transaction, a pool.

The server: $DATABASE_URL if set, else PostgreSQL on localhost:5432 (user postgres,
no password), else a throwaway cluster started for the demo and removed after it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import agentdb
from agentdb.testing.cluster import TempCluster, local_server_dsn


async def demo(dsn: str) -> None:
    conn = await agentdb.connect(dsn, timeout=10)
    try:
        version = await conn.fetchval("SELECT version()")
        print(f"connected: {version}")

        await conn.execute(
            "CREATE TEMPORARY TABLE agents (id int PRIMARY KEY, name text NOT NULL, score float8)"
        )
        await conn.executemany(
            "INSERT INTO agents (id, name, score) VALUES ($1, $2, $3)",
            [(1, "planner", 0.91), (2, "coder", 0.87), (3, "reviewer", None)],
        )
        rows = await conn.fetch("SELECT id, name, score FROM agents WHERE id >= $1 ORDER BY id", 1)
        for r in rows:
            print(f"  row: id={r['id']} name={r[1]!r} score={r['score']}")

        row = await conn.fetchrow("SELECT count(*) AS n, max(score) AS best FROM agents")
        assert row is not None
        print(f"  {row['n']} agents, best score {row['best']}")

        async with conn.transaction():
            await conn.execute("UPDATE agents SET score = 1.0 WHERE name = $1", "reviewer")
        score = await conn.fetchval("SELECT score FROM agents WHERE id = $1", 3)
        print(f"  reviewer after the transaction: {score}")
    finally:
        await conn.close()

    pool = await agentdb.create_pool(dsn, pool_size=20, max_overflow=10)
    try:
        async with pool.acquire() as c:
            pid = await c.fetchval("SELECT pg_backend_pid()")
            print(f"  acquired a connection: backend pid {pid}")
        t0 = time.perf_counter()
        results = await asyncio.gather(*(pool.fetchval("SELECT 1") for _ in range(100)))
        elapsed = (time.perf_counter() - t0) * 1000
        assert results == [1] * 100, results
        print(f"pool: 100 concurrent fetchval('SELECT 1') -> all 1 in {elapsed:.1f} ms")
        print(f"pool stats: {pool.stats()}")
    finally:
        await pool.close()


def main() -> int:
    url = os.environ.get("DATABASE_URL")
    if url:
        print("server: $DATABASE_URL")
        asyncio.run(demo(url))  # connect() takes postgresql+asyncpg:// URLs as they are
        return 0
    local = local_server_dsn()
    if local is not None:
        print(f"server: {local}")
        asyncio.run(demo(local))
        return 0
    with TempCluster() as cluster:
        print(f"server: throwaway cluster at {cluster.dsn()}")
        asyncio.run(demo(cluster.dsn()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
