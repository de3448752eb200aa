"""One adapter per driver: connections, pools, and the operations a workload times.

Every ``*_op`` builder returns a zero-argument coroutine function that runs one operation,
touches every value it fetched, and returns the number of rows fetched (0 for writes).
The adapters bind methods once, outside the timed loop, so the harness itself costs the
same for every driver.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Op = Callable[[], Awaitable[int]]

DRIVERS = ("agentdb", "asyncpg", "psycopg")


class NotAvailable(Exception):
    """The driver lacks the feature; the table shows ``n/a`` with this message."""


def touch(rows: Any) -> int:
    """Access every value of every row (decoding on access counts; skipping does not)."""
    n = 0
    for r in rows:
        for _v in r:
            n += 1
    return n


def _pyformat(sql: str) -> str:
    """``$1, $2`` -> ``%s`` (psycopg); the query files use arguments in order."""
    return re.sub(r"\$\d+", "%s", sql)


def available(name: str) -> str | None:
    """None when the driver imports, else the reason it does not."""
    module = {"agentdb": "agentdb", "asyncpg": "asyncpg", "psycopg": "psycopg"}[name]
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure makes it n/a
        return f"{module} not importable: {e}"
    return None


class Driver:
    name = ""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def version(self) -> str:
        raise NotImplementedError

    async def connect(self) -> Any:
        raise NotImplementedError

    async def close(self, conn: Any) -> None:
        await conn.close()

    async def create_pool(self, size: int) -> Any:
        raise NotImplementedError

    async def close_pool(self, pool: Any) -> None:
        await pool.close()

    async def execute(self, conn: Any, sql: str) -> None:
        await conn.execute(sql)

    # -- operations ---------------------------------------------------------------

    def fetch_op(self, conn: Any, sql: str, args: Sequence[Any] = ()) -> Op:
        fetch = conn.fetch

        async def op() -> int:
            rows = await fetch(sql, *args)
            touch(rows)
            return len(rows)

        return op

    def fetchrow_op(self, conn: Any, sql: str, argf: Callable[[], Sequence[Any]]) -> Op:
        fetchrow = conn.fetchrow

        async def op() -> int:
            row = await fetchrow(sql, *argf())
            touch((row,))
            return 1

        return op

    def fetchval_op(self, conn: Any, sql: str) -> Op:
        fetchval = conn.fetchval

        async def op() -> int:
            await fetchval(sql)
            return 1

        return op

    def pool_fetchval_op(self, pool: Any, sql: str) -> Op:
        fetchval = pool.fetchval

        async def op() -> int:
            await fetchval(sql)
            return 1

        return op

    def acquire_fetchval_op(self, pool: Any, sql: str) -> Op:
        """``fetchval`` on a connection checked out exclusively for the statement."""
        acquire = pool.acquire

        async def op() -> int:
            async with acquire() as conn:
                await conn.fetchval(sql)
            return 1

        return op

    def pool_fetchrow_op(self, pool: Any, sql: str, argf: Callable[[], Sequence[Any]]) -> Op:
        fetchrow = pool.fetchrow

        async def op() -> int:
            row = await fetchrow(sql, *argf())
            touch((row,))
            return 1

        return op

    def executemany_op(self, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> Op:
        executemany = conn.executemany

        async def op() -> int:
            await executemany(sql, rows)
            return 0

        return op

    def copy_op(self, conn: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> Op:
        raise NotAvailable(f"COPY not implemented in {self.name}")


class Agentdb(Driver):
    name = "agentdb"

    def version(self) -> str:
        import agentdb

        return f"{agentdb.__version__} (libpq {agentdb.libpq_version()})"

    async def connect(self) -> Any:
        import agentdb

        return await agentdb.connect(self.dsn)

    async def create_pool(self, size: int) -> Any:
        import agentdb

        # A pool of exactly ``size`` connections, all open before timing starts.
        return await agentdb.create_pool(self.dsn, pool_size=size, max_overflow=0, min_size=size)

    def copy_op(self, conn: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> Op:
        if not hasattr(conn, "copy_records_to_table"):
            raise NotAvailable("COPY not implemented in agentdb yet")
        copy = conn.copy_records_to_table

        async def op() -> int:
            await copy(table, records=rows, columns=columns)
            return 0

        return op


class Asyncpg(Driver):
    name = "asyncpg"

    def version(self) -> str:
        import asyncpg

        return asyncpg.__version__

    async def connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.dsn)

    async def create_pool(self, size: int) -> Any:
        import asyncpg

        return await asyncpg.create_pool(self.dsn, min_size=size, max_size=size)

    def copy_op(self, conn: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> Op:
        copy = conn.copy_records_to_table

        async def op() -> int:
            await copy(table, records=rows, columns=columns)
            return 0

        return op


class Psycopg(Driver):
    """psycopg 3, async, its C implementation; autocommit like the other two drivers
    (otherwise every statement opens a transaction the pool must commit or roll back)."""

    name = "psycopg"

    def version(self) -> str:
        import psycopg

        return f"{psycopg.__version__} (impl {psycopg.pq.__impl__}, libpq {psycopg.pq.version()})"

    async def connect(self) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)

    async def create_pool(self, size: int) -> Any:
        try:
            from psycopg_pool import AsyncConnectionPool
        except ImportError:
            raise NotAvailable("psycopg_pool not installed") from None
        pool = AsyncConnectionPool(
            self.dsn, min_size=size, max_size=size, kwargs={"autocommit": True}, open=False
        )
        await pool.open(wait=True)
        return pool

    async def execute(self, conn: Any, sql: str) -> None:
        await conn.execute(sql)

    def fetch_op(self, conn: Any, sql: str, args: Sequence[Any] = ()) -> Op:
        execute = conn.execute
        sql = _pyformat(sql)
        params = tuple(args) or None

        async def op() -> int:
            cur = await execute(sql, params)
            rows = await cur.fetchall()
            touch(rows)
            return len(rows)

        return op

    def fetchrow_op(self, conn: Any, sql: str, argf: Callable[[], Sequence[Any]]) -> Op:
        execute = conn.execute
        sql = _pyformat(sql)

        async def op() -> int:
            cur = await execute(sql, argf())
            touch((await cur.fetchone(),))
            return 1

        return op

    def fetchval_op(self, conn: Any, sql: str) -> Op:
        execute = conn.execute

        async def op() -> int:
            cur = await execute(sql)
            (await cur.fetchone())[0]
            return 1

        return op

    def pool_fetchval_op(self, pool: Any, sql: str) -> Op:
        connection = pool.connection

        async def op() -> int:
            async with connection() as conn:
                cur = await conn.execute(sql)
                (await cur.fetchone())[0]
            return 1

        return op

    # psycopg_pool's only path is the exclusive checkout.
    acquire_fetchval_op = pool_fetchval_op

    def pool_fetchrow_op(self, pool: Any, sql: str, argf: Callable[[], Sequence[Any]]) -> Op:
        connection = pool.connection
        sql = _pyformat(sql)

        async def op() -> int:
            async with connection() as conn:
                cur = await conn.execute(sql, argf())
                touch((await cur.fetchone(),))
            return 1

        return op

    def executemany_op(self, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> Op:
        cursor = conn.cursor
        sql = _pyformat(sql)

        async def op() -> int:
            async with cursor() as cur:
                await cur.executemany(sql, rows)
            return 0

        return op

    def copy_op(self, conn: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> Op:
        cursor = conn.cursor
        stmt = f"COPY {table} ({', '.join(columns)}) FROM STDIN"

        async def op() -> int:
            async with cursor() as cur:
                async with cur.copy(stmt) as copy:
                    for r in rows:
                        await copy.write_row(r)
            return 0

        return op


class External(Driver):
    """A reference that is not a Python driver (pgbench): the case runs it itself."""

    def __init__(self, name: str, dsn: str) -> None:
        super().__init__(dsn)
        self.name = name


def make(name: str, dsn: str) -> Driver:
    return {"agentdb": Agentdb, "asyncpg": Asyncpg, "psycopg": Psycopg}[name](dsn)
