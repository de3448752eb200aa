"""Adversity: TLS (scenario 13). A test CA and server certificate made with the openssl
CLI (faults/tls.py); the throwaway cluster serves them (ssl=on) for the length of the test
(``tls_cluster``, tests/conftest.py)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from faults.checks import Timer

import agentdb

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed")


async def test_sslmode_require_against_a_server_without_tls(fault_cluster: Any) -> None:
    with Timer() as t:
        with pytest.raises(agentdb.OperationalError) as info:
            await agentdb.connect(fault_cluster.dsn() + "?sslmode=require", timeout=3)
    assert t.elapsed < 3 + 1.5
    assert "server does not support SSL" in str(info.value), str(info.value)
    conn = await agentdb.connect(fault_cluster.dsn() + "?sslmode=prefer", timeout=3)
    try:
        assert not conn.ssl_in_use()
    finally:
        await conn.close()


async def test_verify_full_with_a_test_ca(tls_cluster: tuple[Any, str]) -> None:
    cluster, ca = tls_cluster
    base = (f"hostaddr=127.0.0.1 port={cluster.port} user=postgres dbname=postgres "
            f"sslmode=verify-full sslrootcert={ca}")
    conn = await agentdb.connect(base + " host=localhost", timeout=5)
    try:
        assert conn.ssl_in_use()
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()
    # a pool over TLS too
    pool = await agentdb.create_pool(base + " host=localhost", pool_size=2, timeout=5)
    try:
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close(timeout=5)
    # the wrong host name: refused clearly
    with Timer() as t:
        with pytest.raises(agentdb.OperationalError) as info:
            await agentdb.connect(base + " host=wrong.name.example", timeout=5)
    assert t.elapsed < 5 + 1.5
    assert "does not match host name" in str(info.value), str(info.value)
    # an unknown CA: refused clearly
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect(
            base.replace("ca.crt", "other.crt") + " host=localhost",
            timeout=5,
        )
    assert "certificate verify failed" in str(info.value), str(info.value)
