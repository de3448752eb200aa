"""Adversity: the network between agentdb and PostgreSQL misbehaves (the fault proxy).

Scenarios 11 (a half-open link), 12 (connect failures: each distinct, each on time) and
the proxy's reset/latency modes. Every test ends with the pool all idle, no backend left
behind and nothing idle in transaction.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from faults.checks import Timer, assert_backends, assert_clean, settle, wait_until

import agentdb

APP = f"adv_net_{os.getpid()}"  # unique: concurrent runs share the server
CANCEL_GRACE = agentdb.connection.DEFAULT_CANCEL_GRACE


async def test_proxy_passes_traffic_and_latency_adds_delay(fault_proxy: Any) -> None:
    conn = await agentdb.connect(fault_proxy.dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT 41 + 1") == 42
        fault_proxy.latency(0.2)
        with Timer() as t:
            assert await conn.fetchval("SELECT 2") == 2
        assert 0.35 <= t.elapsed < 0.4 + 1.5  # 0.2 s each way
        with pytest.raises(TimeoutError):  # a round trip now takes longer than the timeout
            await conn.fetchval("SELECT 3", timeout=0.1)
        fault_proxy.restore()
        assert await conn.fetchval("SELECT 4", timeout=5) == 4
    finally:
        await conn.close(timeout=5)


async def test_half_open_link_command_timeout_close_and_replacement(
    fault_proxy: Any, pg_dsn: str, admin_sql: Any
) -> None:
    """Scenario 11: the link goes silent (no RST, no FIN) under a pooled connection."""
    pool = await agentdb.create_pool(
        fault_proxy.dsn, pool_size=2, max_overflow=0, pool_timeout=5, command_timeout=0.5,
        application_name=APP, min_size=1, timeout=2,
    )
    try:
        async with pool.acquire() as c:
            old_pid = c.get_backend_pid()
        fault_proxy.silent()
        with Timer() as t:
            with pytest.raises(TimeoutError):
                await pool.fetchval("SELECT 1")
        assert 0.45 <= t.elapsed < 0.5 + 1.5, t.elapsed  # on time, not after the cancel
        # The cancel request cannot reach the server either: bounded by the cancel grace
        # (5 s), then the connection is given up and the pool is all idle again.
        with Timer() as t:
            await settle(pool, timeout=15)
        assert t.elapsed < CANCEL_GRACE + 1.5, t.elapsed
        fault_proxy.restore()
        with Timer() as t2:
            async with pool.acquire() as c:
                assert await c.fetchval("SELECT 2") == 2
                assert c.get_backend_pid() != old_pid
        assert t2.elapsed < 5
        await assert_clean(pool, admin_sql, pg_dsn, APP)
    finally:
        await pool.close(timeout=5)
    await assert_backends(admin_sql, pg_dsn, APP, at_most=0)


async def test_close_on_a_half_open_link_is_bounded(
    fault_proxy: Any, pg_dsn: str, admin_sql: Any
) -> None:
    conn = await agentdb.connect(fault_proxy.dsn, timeout=5, application_name=APP)
    busy = asyncio.ensure_future(conn.fetchval("SELECT 1"))
    await busy
    fault_proxy.silent()
    busy = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(0.1)"))
    await asyncio.sleep(0.05)
    with Timer() as t:
        await conn.close(timeout=0.5)
    assert t.elapsed < 0.5 + 1.5, t.elapsed
    assert conn.is_closed()
    with pytest.raises(agentdb.InterfaceError):
        await busy
    fault_proxy.restore()  # the proxy now sees the client's close and ends the backend
    await assert_backends(admin_sql, pg_dsn, APP, at_most=0)


async def test_connect_through_a_silent_link_times_out(fault_proxy: Any) -> None:
    fault_proxy.silent()
    with Timer() as t:
        with pytest.raises(TimeoutError):
            await agentdb.connect(fault_proxy.dsn, timeout=0.5)
    assert 0.45 <= t.elapsed < 0.5 + 1.5


async def test_reset_mid_query_is_a_prompt_connection_lost(
    fault_proxy: Any, pg_dsn: str, admin_sql: Any
) -> None:
    pool = await agentdb.create_pool(
        fault_proxy.dsn, pool_size=2, max_overflow=0, pool_timeout=5, application_name=APP,
        min_size=2,
    )
    try:
        # (short: the server-side backend only notices the reset once its sleep ends)
        busy = asyncio.ensure_future(pool.fetchval("SELECT pg_sleep(1)"))
        await asyncio.sleep(0.2)
        with Timer() as t:
            fault_proxy.reset()
            with pytest.raises(agentdb.ConnectionLostError):
                await busy
        assert t.elapsed < 1.5
        # The idle one was reset too: noticed without a query, dropped.
        assert await wait_until(lambda: pool.stats()["size"] == 0, timeout=5), pool.stats()
        # While resetting: a clear error within the connect timeout, no hang.
        with Timer() as t:
            with pytest.raises(agentdb.OperationalError):
                await pool.fetchval("SELECT 1")
        assert t.elapsed < 2
        fault_proxy.restore()
        assert await pool.fetchval("SELECT 5") == 5
        await assert_clean(pool, admin_sql, pg_dsn, APP)
    finally:
        await pool.close(timeout=5)
