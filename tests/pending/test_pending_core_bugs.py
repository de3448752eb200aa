"""Scenarios the C core gets wrong today (kept out of the collected suite; see README).

Each test asserts the behaviour the issue asks for. Diagnoses point at src/pool.c and
src/connection.c, which are being rewritten.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import agentdb


async def test_failed_connects_are_not_retried_in_a_hot_loop() -> None:
    """Three callers at once against a port that refuses: each should get the connect
    error promptly (or, while waiting for a checked-out connection, a PoolTimeout that
    names the connect error), and the pool should not hammer the server.

    Today: all three wait the full pool_timeout and get a PoolTimeout saying "the pool is
    exhausted", while the pool makes ~10,000 connect attempts per second (stats
    connect_errors ~ 19,000 in 2 s). Diagnosis: src/pool.c pool_on_opened() fails a waiter
    only when ``in_use + shared + resetting + opening == 0``; with several connects in
    flight each failure sees the others' ``opening`` and fails nobody, then pool_grow()
    starts a new connect at once (no backoff), so ``opening`` never reaches 0 while
    waiters remain. Same loop with connections checked out (a role's CONNECTION LIMIT, or
    max_connections reached: ~280 attempts/s).
    """
    pool = await agentdb.create_pool(
        "postgresql://u@127.0.0.1:1/x", pool_size=2, max_overflow=1, pool_timeout=2,
        min_size=0, timeout=2,
    )
    try:
        start = time.monotonic()
        outs = await asyncio.gather(
            *(pool.fetchval("SELECT 1") for _ in range(3)), return_exceptions=True
        )
        elapsed = time.monotonic() - start
        assert all(isinstance(o, agentdb.OperationalError) for o in outs), outs
        assert elapsed < 1.0, elapsed
        assert pool.stats()["connect_errors"] <= 20, pool.stats()["connect_errors"]
    finally:
        await pool.close(timeout=5)
