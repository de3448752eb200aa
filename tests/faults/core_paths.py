"""The C core's main paths in one short script, for valgrind (.ci/valgrind.sh).

Connect, every codec both ways, server errors, bad input, pipelining, timeouts and the
cancel, a killed backend, the pool (acquire, release dirty, shortcuts, waiters, close),
a collected checked-out connection, the decoders on malformed input. Run directly too:
``python tests/faults/core_paths.py [DSN]``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import sys
import uuid
import warnings
from decimal import Decimal

import agentdb
from agentdb import _core

DSN = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/agentdb_test"

VALUES = [
    ("int2", 7), ("int4", -2**31), ("int8", 2**63 - 1), ("float4", 1.5), ("float8", float("nan")),
    ("numeric", Decimal("-123456789.000000001")), ("numeric", Decimal("1e300")),
    ("text", "h\u00e9llo \U0001f600"), ("bytea", b"\x00\xff" * 100), ("bool", True),
    ("date", dt.date(2024, 2, 29)), ("time", dt.time(23, 59, 59, 999999)),
    ("timestamp", dt.datetime(1999, 12, 31, 23, 59)),
    ("timestamptz", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)),
    ("interval", dt.timedelta(days=-3, seconds=5)), ("uuid", uuid.UUID(int=12345)),
    ("jsonb", {"a": [1, 2, None]}), ("json", [1, "x"]), ("int4[]", [[1, 2], [3, None]]),
    ("text[]", ["a", None, ""]), ("numeric[]", [Decimal("1.5")]), ("uuid[]", [uuid.uuid4()]),
]


async def connection_paths() -> None:
    conn = await agentdb.connect(DSN, timeout=30, application_name="adv_valgrind")
    for typ, v in VALUES:
        got = await conn.fetchval(f"SELECT $1::{typ}", v)
        assert got == v or got != got, (typ, v, got)
    rows = await conn.fetch("SELECT g, g::text, g * 1.5 FROM generate_series(1, 2000) g")
    assert len(rows) == 2000 and dict(rows[0].items())
    await conn.execute("CREATE TEMP TABLE vg (id int primary key, t text)")
    await conn.executemany("INSERT INTO vg VALUES ($1, $2)", [(i, str(i)) for i in range(200)])
    for bad in (("SELECT 1/0",), ("SELECT $1::int", "x"), ("INSERT INTO vg VALUES (1, 'dup')",),
                ("SELECT $1::text", "nul\x00"), ("SELEC",), ("COPY vg TO STDOUT",)):
        try:
            await conn.fetchval(*bad)
        except agentdb.Error:
            pass
    outs = await asyncio.gather(*(conn.fetchval("SELECT $1::int", i) for i in range(100)),
                                conn.fetchval("SELECT 1/0"), return_exceptions=True)
    assert outs[:100] == list(range(100))
    async with conn.transaction():
        async with conn.transaction():
            await conn.execute("INSERT INTO vg VALUES (-1, 'sp')")
    try:
        await conn.fetchval("SELECT pg_sleep(5)", timeout=0.2)
    except TimeoutError:
        pass
    t = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(5)"))
    await asyncio.sleep(0.2)
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        pass
    assert await conn.fetchval("SELECT 1", timeout=10) == 1
    await conn.close()
    try:
        await conn.fetchval("SELECT 1")
    except agentdb.InterfaceError:
        pass
    for url in ("postgresql://u:pw@127.0.0.1:1/x", "postgresql://u@[::1/x",
                "postgresql://postgres@127.0.0.1:5432/no_such_db_vg"):
        try:
            await agentdb.connect(url, timeout=10)
        except (agentdb.Error, OSError):
            pass
    # killed while busy
    conn = await agentdb.connect(DSN)
    pid = conn.get_backend_pid()
    busy = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(10)"))
    killer = await agentdb.connect(DSN)
    await asyncio.sleep(0.2)
    await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
    try:
        await busy
    except agentdb.Error:
        pass
    await killer.close()
    conn.terminate()


async def pool_paths() -> None:
    pool = await agentdb.create_pool(DSN, pool_size=2, max_overflow=1, pool_timeout=5)
    async with pool.acquire() as c:
        await c.execute("BEGIN")
        await c.execute("SELECT 1")
    held = [await pool.acquire() for _ in range(3)]
    waiter = asyncio.ensure_future(pool.acquire(timeout=0.2))
    try:
        await waiter
    except agentdb.PoolTimeout:
        pass
    for c in held:
        await pool.release(c)
    await asyncio.gather(*(pool.fetchval("SELECT $1::int", i) for i in range(200)))
    leaked = await pool.acquire()
    await asyncio.sleep(0)  # the loop's last handle drops its reference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del leaked
        gc.collect()
    w = asyncio.ensure_future(pool.fetchval("SELECT pg_sleep(0.3)"))
    await asyncio.sleep(0.05)
    await pool.close(timeout=1)
    try:
        await w
    except agentdb.Error:
        pass


async def sharing_paths() -> None:
    """Session-changing shortcuts (run alone, then reset), the reset of a released
    session, a reset coroutine, scheduling by expected wait, abandoned statements
    cancelled as the head advances, and the statement classifier."""

    async def user_reset(conn: agentdb.Connection) -> None:
        await conn.reset()

    for reset in (None, "transaction", user_reset):
        pool = await agentdb.create_pool(DSN, pool_size=2, max_overflow=1, reset=reset)
        await asyncio.gather(
            pool.execute("SET search_path = pg_catalog"),
            pool.execute("BEGIN"),
            pool.fetchval("SELECT pg_advisory_lock(1)"),
            *(pool.fetchval("SELECT $1::int", i) for i in range(50)),
        )
        async with pool.acquire() as c:
            await c.execute("CREATE TEMP TABLE t (a int)")
            await c.execute("PREPARE p AS SELECT 1")
            await c.execute("BEGIN")
        tasks = [asyncio.ensure_future(pool.fetchval("SELECT pg_sleep(5)")) for _ in range(6)]
        await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.fetchval("SELECT 1")
        pool._profiles()
        await pool.close(timeout=5)
    for sql in ("SELECT 'x", "SET NAMES 'latin1'", "BEGIN; SET x = 1; COMMIT", "$1$", ""):
        _core._classify_sql(sql)


def decoder_paths() -> None:
    for oid in (16, 17, 20, 21, 23, 25, 26, 114, 700, 701, 1082, 1083, 1114, 1184, 1186,
                1266, 1700, 2950, 3802, 1007, 1009, 1231):
        for data in (b"", b"\x00", b"\xff" * 3, b"\x00\x00\x00\x01" * 7, b"{1,2", b"-",
                     b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x17\xff\xff\xff\xff"):
            for binary in (True, False):
                try:
                    _core._decode(oid, data, binary)
                except Exception:
                    pass


async def main() -> None:
    for _ in range(2):
        await connection_paths()
        await pool_paths()
        await sharing_paths()
        decoder_paths()
    gc.collect()
    print("core paths: ok")


if __name__ == "__main__":
    asyncio.run(main())
