"""Adversity: the example FastAPI service (scenario 20) on the throwaway cluster.

Clients that disconnect mid-request and clients that time out (over uvicorn, real
sockets), and 1,000 concurrent requests with the database restarted in the middle: no
connection leaked, nothing idle in transaction, the service healthy again after.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults.checks import Timer, wait_until

import agentdb
from agentdb import settings
from agentdb.settings import agentdb_url

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from service.app_lifespan import app  # noqa: E402

DBNAME = "adv_service"


def _db_backends(cluster: Any) -> list[tuple[str, ...]]:
    return cluster.sql(
        f"SELECT pid, coalesce(state, '') FROM pg_stat_activity WHERE datname = '{DBNAME}'"
    )


async def _assert_no_leak(cluster: Any, timeout: float = 10.0) -> None:
    pool = await agentdb.get_pool()
    ok = await wait_until(
        lambda: pool.stats()["in_use"] == 0 and pool.stats()["shared"] == 0
        and pool.stats()["resetting"] == 0 and pool.stats()["waiting"] == 0,
        timeout,
    )
    assert ok, pool.stats()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await asyncio.to_thread(_db_backends, cluster)
        stuck = [r for r in rows if r[1].startswith("idle in transaction")]
        if len(rows) <= 30 and not stuck and len(rows) <= pool.stats()["size"]:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"backends left: {rows}; pool: {pool.stats()}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def service(fault_cluster: Any) -> AsyncIterator[Any]:
    fault_cluster.sql(f"DROP DATABASE IF EXISTS {DBNAME} WITH (FORCE)")
    settings.configure(
        database_url=agentdb_url(fault_cluster.dsn(DBNAME)), pool_size=20, max_overflow=10,
        pool_timeout=5, debug=False,
    )
    try:
        async with app.router.lifespan_context(app):
            yield fault_cluster
    finally:
        await agentdb.close_db_connection()
        settings.reset()


@pytest.fixture
async def uvicorn_url(service: Any) -> AsyncIterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        assert await wait_until(lambda: server.started, 10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def test_clients_disconnect_and_time_out_mid_request(
    service: Any, uvicorn_url: str
) -> None:
    cluster = service
    port = int(uvicorn_url.rsplit(":", 1)[1])
    pool = await agentdb.get_pool()
    # 20 clients send a slow request and go away while their sessions hold connections
    writers = []
    for _ in range(20):
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /agents/slow?seconds=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        await w.drain()
        writers.append(w)
    assert await wait_until(lambda: pool.stats()["in_use"] >= 10, 5), pool.stats()
    for w in writers:
        w.close()
    # 20 clients with a 0.2 s timeout on a 1 s request
    async with httpx.AsyncClient(base_url=uvicorn_url, timeout=0.2) as c:
        with Timer() as t:
            outs = await asyncio.gather(
                *(c.get("/agents/slow", params={"seconds": 1}) for _ in range(20)),
                return_exceptions=True,
            )
        assert all(isinstance(o, httpx.TimeoutException) for o in outs), outs[:2]
        assert t.elapsed < 0.2 + 1.5
    # every session ends when its statement does: connections back, no transaction left
    with Timer() as t:
        await _assert_no_leak(cluster, timeout=10)
    assert t.elapsed < 1 + 1.5 + 1, t.elapsed
    async with httpx.AsyncClient(base_url=uvicorn_url, timeout=10) as c:
        assert (await c.get("/health")).json() == {"database": "healthy"}
        assert (await c.get("/agents")).status_code == 200


async def test_thousand_requests_with_a_restart_in_the_middle(service: Any) -> None:
    cluster = service
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    codes: collections.Counter[Any] = collections.Counter()
    slowest = 0.0

    async def one(c: httpx.AsyncClient, i: int) -> None:
        nonlocal slowest
        t0 = asyncio.get_running_loop().time()
        try:
            if i % 4 == 0:
                r = await c.post("/agents", json={"name": f"a{i}"})
            elif i % 4 == 1:
                r = await c.get("/agents/slow", params={"seconds": 0.02})
            else:
                r = await c.get("/health" if i % 4 == 2 else "/agents?limit=1")
            codes[r.status_code] += 1
        except Exception as e:  # noqa: BLE001 - counted
            codes[type(e).__name__] += 1
        slowest = max(slowest, asyncio.get_running_loop().time() - t0)

    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as c:
        async def restart_soon() -> None:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(cluster.restart)

        with Timer() as t:
            await asyncio.gather(restart_soon(), *(one(c, i) for i in range(1000)))
        print(f"1000 requests across a restart: {dict(codes)} in {t.elapsed:.1f}s, "
              f"slowest {slowest:.2f}s")
        assert sum(codes.values()) == 1000
        assert set(codes) <= {200, 201, 500}, codes  # answered: ok, or a clear 500
        assert slowest < 5 + 10 + 1.5  # pool_timeout + the drop-in's connect timeout
        # healthy again by itself
        with Timer() as t:
            while (await c.get("/health")).json() != {"database": "healthy"}:
                assert t.elapsed < 10
                await asyncio.sleep(0.1)
        r = await c.post("/agents", json={"name": "after"})
        assert r.status_code == 201
    await _assert_no_leak(cluster)
