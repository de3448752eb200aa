"""The four drop-in functions and the example FastAPI service (examples/service)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

import agentdb
from agentdb import settings
from agentdb.settings import agentdb_url
from agentdb.testing.cluster import dsn_with_dbname

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))  # the example is the package "service"

from service.app import app as on_event_app  # noqa: E402
from service.app_lifespan import app as lifespan_app  # noqa: E402
from service.models import Agent  # noqa: E402
from uvicorn_process import uvicorn_process  # noqa: E402

DBNAME = "agentdb_dropin_test"
AdminSQL = Callable[..., list[tuple[str, ...]]]


@pytest.fixture(scope="module")
def service_url(pg_dsn: str, pg_admin_dsn: str, admin_sql: AdminSQL) -> Iterator[str]:
    """A database the service creates itself (dropped first)."""
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {DBNAME} WITH (FORCE)")
    yield agentdb_url(dsn_with_dbname(pg_dsn, DBNAME))


@pytest.fixture
async def service(service_url: str) -> AsyncIterator[str]:
    settings.configure(database_url=service_url, pool_size=20, max_overflow=10, debug=False)
    try:
        yield service_url
    finally:
        await agentdb.close_db_connection()
        settings.reset()


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_import_is_lazy() -> None:
    code = "import sys, agentdb; assert 'sqlalchemy' not in sys.modules; print('ok')"
    # From a neutral directory: the checkout's agentdb/ (unbuilt) must not shadow the package.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_settings_from_environ() -> None:
    s = settings.from_environ({})
    assert s.database_url.startswith("postgresql+asyncpg://")
    assert (s.pool_size, s.max_overflow, s.pool_timeout, s.pool_recycle, s.pre_ping) == (
        20,
        10,
        30.0,
        3600.0,
        True,
    )
    env = {
        "DATABASE_URL": "postgres://u:hunter2@db:5433/x",
        "DEBUG": "true",
        "AGENTDB_POOL_SIZE": "5",
        "AGENTDB_MAX_OVERFLOW": "1",
        "AGENTDB_POOL_TIMEOUT": "2.5",
        "AGENTDB_POOL_RECYCLE": "60",
        "AGENTDB_PRE_PING": "false",
    }
    s = settings.from_environ(env)
    assert s.sqlalchemy_url == "postgresql+agentdb://u:hunter2@db:5433/x"
    assert s.debug and s.pool_size == 5 and s.max_overflow == 1 and not s.pre_ping
    assert "hunter2" not in repr(s)
    with pytest.raises(TypeError):
        settings.configure(no_such_setting=1)


@pytest.mark.parametrize("app", [on_event_app, lifespan_app], ids=["on_event", "lifespan"])
async def test_service_over_asgi(service: str, app: Any) -> None:
    async with app.router.lifespan_context(app), client(app) as c:
        r = await c.post("/agents", json={"name": "planner", "config": {"tools": ["a"]}})
        assert r.status_code == 201, r.text
        created = r.json()
        r = await c.get("/agents")
        assert r.status_code == 200
        assert created["id"] in {a["id"] for a in r.json()}
        assert (await c.get("/health")).json() == {"database": "healthy"}
        r = await c.post("/agents", json={"config": {}})
        assert r.status_code == 422
    # outside FastAPI, with SQLModel's exec() too
    async with agentdb.async_session_maker() as session:
        agents = (await session.execute(sa.select(Agent))).scalars().all()
        assert any(a.name == "planner" for a in agents)
        exec_agents = (await session.exec(select(Agent))).all()  # type: ignore[attr-defined]
        assert len(exec_agents) == len(agents)


async def test_create_db_and_tables_is_idempotent_and_concurrent(service: str) -> None:
    await asyncio.gather(*(agentdb.create_db_and_tables() for _ in range(4)))
    await agentdb.create_db_and_tables()
    engine = agentdb.get_engine()
    async with engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT to_regclass('agents') IS NOT NULL"))


async def test_close_is_idempotent_and_reopens(service: str) -> None:
    assert await agentdb.check_database_connection()
    await agentdb.close_db_connection()
    await agentdb.close_db_connection()
    assert await agentdb.check_database_connection()
    pool = await agentdb.get_pool()
    assert await pool.fetchval("SELECT 1") == 1


async def test_check_database_connection_when_down() -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.configure(database_url=f"postgresql://postgres:pw@127.0.0.1:{port}/x")
    try:
        t0 = time.monotonic()
        assert await agentdb.check_database_connection(timeout=2) is False
        assert time.monotonic() - t0 < 3
    finally:
        await agentdb.close_db_connection()
        settings.reset()


async def test_check_database_connection_blackhole() -> None:
    # a listener that never answers (a host that drops packets, as far as we can tell)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(5)
        port = srv.getsockname()[1]
        settings.configure(database_url=f"postgresql://postgres@127.0.0.1:{port}/x")
        try:
            t0 = time.monotonic()
            assert await agentdb.check_database_connection(timeout=1) is False
            assert time.monotonic() - t0 < 2
        finally:
            await agentdb.close_db_connection()
            settings.reset()


async def test_get_session_rolls_back_on_error(service: str) -> None:
    await agentdb.create_db_and_tables()
    gen = agentdb.get_session()
    session = await gen.__anext__()
    session.add(Agent(name="never"))
    await session.flush()
    with pytest.raises(RuntimeError):
        await gen.athrow(RuntimeError("handler failed"))
    async with agentdb.async_session_maker() as s:
        n = await s.scalar(sa.select(sa.func.count()).where(Agent.name == "never"))
        assert n == 0
    pool = await agentdb.get_pool()
    assert pool.stats()["in_use"] == 0


async def test_get_session_closed_early_ends_without_expiring(service: str) -> None:
    """aclose() (the consumer stopped early) closes the session: nothing written stays, and
    the objects it loaded keep their values (no ORM rollback expiring them)."""
    await agentdb.create_db_and_tables()
    async with agentdb.async_session_maker() as s:
        s.add(Agent(name="kept"))
        await s.commit()
    gen = agentdb.get_session()
    session = await gen.__anext__()
    loaded = (await session.execute(select(Agent).where(Agent.name == "kept"))).scalar_one()
    session.add(Agent(name="uncommitted"))
    await session.flush()
    await gen.aclose()
    assert "name" in loaded.__dict__ and loaded.name == "kept"  # loaded, not expired
    async with agentdb.async_session_maker() as s:
        n = await s.scalar(sa.select(sa.func.count()).where(Agent.name == "uncommitted"))
        assert n == 0
    pool = await agentdb.get_pool()
    assert pool.stats()["in_use"] == 0


async def test_concurrent_requests_hold_at_most_30_backends(
    service: str, pg_admin_dsn: str, admin_sql: AdminSQL
) -> None:
    app = lifespan_app
    stop = asyncio.Event()
    samples: list[tuple[int, int]] = []

    async def sample() -> None:
        q = (
            "SELECT count(*), count(*) FILTER (WHERE state = 'idle in transaction') "
            f"FROM pg_stat_activity WHERE datname = '{DBNAME}'"
        )
        while not stop.is_set():
            rows = await asyncio.to_thread(admin_sql, pg_admin_dsn, q)
            samples.append((int(rows[0][0]), int(rows[0][1])))
            await asyncio.sleep(0.05)

    async with app.router.lifespan_context(app), client(app) as c:
        sampler = asyncio.create_task(sample())
        rs = await asyncio.gather(
            *(c.get("/agents/slow", params={"seconds": 0.05}) for _ in range(150)),
            *(c.get("/agents") for _ in range(150)),
        )
        stop.set()
        await sampler
        assert all(r.status_code == 200 for r in rs)
        pool = await agentdb.get_pool()
        stats = pool.stats()
        assert stats["in_use"] == 0
        assert stats["size"] <= 30
    assert samples and max(n for n, _ in samples) <= 30
    rows = admin_sql(
        pg_admin_dsn,
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE datname = '{DBNAME}' AND state = 'idle in transaction'",
    )
    assert rows[0][0] == "0"


async def test_cancelled_request_releases_its_connection(service: str) -> None:
    app = lifespan_app
    async with app.router.lifespan_context(app), client(app) as c:
        task = asyncio.create_task(c.get("/agents/slow", params={"seconds": 5}))
        pool = await agentdb.get_pool()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if pool.stats()["in_use"] == 1:
                break
        assert pool.stats()["in_use"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if pool.stats()["in_use"] == 0:
                break
            await asyncio.sleep(0.02)
        assert pool.stats()["in_use"] == 0
        assert (await c.get("/agents")).status_code == 200


async def test_client_disconnect_over_uvicorn(service: str) -> None:
    import uvicorn

    app = lifespan_app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /agents/slow?seconds=0.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        pool = await agentdb.get_pool()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if pool.stats()["in_use"] == 1:
                break
        writer.close()  # the client goes away mid-request
        await writer.wait_closed()
        for _ in range(200):
            if pool.stats()["in_use"] == 0:
                break
            await asyncio.sleep(0.02)
        assert pool.stats()["in_use"] == 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            assert (await c.get("/health")).json() == {"database": "healthy"}
    finally:
        server.should_exit = True
        await serving


def test_service_in_a_uvicorn_process(service_url: str) -> None:
    env = dict(os.environ, DATABASE_URL=service_url.replace("+agentdb", "+asyncpg"))
    with uvicorn_process(EXAMPLES, "service.app:app", env) as served:
        assert served.first is not None and served.first.json() == {"database": "healthy"}
        r = httpx.post(served.base + "/agents", json={"name": "from-http"})
        assert r.status_code == 201, r.text
        names = {a["name"] for a in httpx.get(served.base + "/agents").json()}
        assert "from-http" in names
    out = served.output
    # uvicorn re-raises SIGTERM after a graceful shutdown
    assert served.returncode in (0, -15), out
    assert "Application shutdown complete" in out, out
    assert "Traceback" not in out, out
