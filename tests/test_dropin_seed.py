"""A service written as the seed page shows runs on agentdb by changing only its import.

``tests/seed_service/`` is that service: ``database.py`` is the seed's own module (an
asyncpg engine, ``echo`` with ``DEBUG=true``), ``app.py`` its handlers importing from
agentdb. Here: agentdb exports every name the seed module does, with the same kind; the
app runs the same on both imports; ``agentdb.engine`` and ``agentdb.async_session_maker``
behave as the seed's names do, across ``configure()`` and ``close_db_connection()``; and
under uvicorn with ``DEBUG=true`` its SQL shows, as the seed's ``echo=True`` shows it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
import types
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

import agentdb
from agentdb import settings
from agentdb.settings import agentdb_url
from agentdb.testing.cluster import dsn_with_dbname

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # the fixture service is the package "seed_service"

from uvicorn_process import uvicorn_process  # noqa: E402

SEED_DIR = TESTS / "seed_service"
APP_FILE = SEED_DIR / "app.py"
AGENTDB_IMPORT = "from agentdb import ("
SEED_IMPORT = "from .database import ("
SECRET = "seed-Pa55word"
AdminSQL = Callable[..., list[tuple[str, ...]]]


def with_password(dsn: str) -> str:
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)


@pytest.fixture(scope="module")
def seed_dbname(pg_dsn: str, pg_admin_dsn: str, admin_sql: AdminSQL) -> Iterator[str]:
    """A database of this module's own, missing at first (create_db_and_tables makes it)."""
    name = urlsplit(pg_dsn).path.lstrip("/") + "_seed"
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    yield name
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def on_agentdb(pg_dsn: str, seed_dbname: str) -> AsyncIterator[str]:
    """agentdb's drop-in configured for the seed database (a URL with a password)."""
    url = agentdb_url(with_password(dsn_with_dbname(pg_dsn, seed_dbname)))
    settings.configure(database_url=url, debug=False)
    try:
        yield url
    finally:
        await agentdb.close_db_connection()
        settings.reset()


def seed_database_module(url: str) -> types.ModuleType:
    """The seed's ``database.py``, imported with ``DATABASE_URL`` set (it reads it then)."""
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        sys.modules.pop("seed_service.database", None)
        return importlib.import_module("seed_service.database")
    finally:
        if saved is None:
            del os.environ["DATABASE_URL"]
        else:
            os.environ["DATABASE_URL"] = saved


def load_seed_app() -> types.ModuleType:
    """``app.py`` with its one agentdb line put back as the seed has it."""
    source = APP_FILE.read_text()
    assert source.count(AGENTDB_IMPORT) == 1 and SEED_IMPORT not in source
    source = source.replace(AGENTDB_IMPORT, SEED_IMPORT)
    name = "seed_service.app_on_seed"
    module = types.ModuleType(name)
    module.__file__ = str(APP_FILE)
    module.__package__ = "seed_service"
    sys.modules[name] = module
    exec(compile(source, str(APP_FILE), "exec"), module.__dict__)
    return module


def seed_module_names() -> list[str]:
    """The names the seed module defines (not those it imports)."""
    tree = ast.parse((SEED_DIR / "database.py").read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return [n for n in names if not n.startswith("_")]


def kind(obj: Any) -> str:
    if isinstance(obj, AsyncEngine):
        return "AsyncEngine"
    if isinstance(obj, async_sessionmaker):
        return "async_sessionmaker"
    if inspect.isasyncgenfunction(obj):
        return "async generator function"
    if inspect.iscoroutinefunction(obj):
        return "coroutine function"
    return type(obj).__name__


async def exercise(app: Any) -> dict[str, Any]:
    """The seed page's startup, requests and shutdown; what the service answered."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=transport, base_url="http://test"
    ) as c:
        health = (await c.get("/health")).json()
        created = await c.post("/agents", params={"name": "planner"})
        assert created.status_code == 201, created.text
        agents = (await c.get("/agents")).json()
        count = (await c.get("/agents/count")).json()
    return {"health": health, "created": created.json(), "agents": agents, "count": count}


# -- the exports --------------------------------------------------------------


def test_agentdb_exports_every_name_of_the_seed_module() -> None:
    seed = seed_database_module("postgresql+asyncpg://postgres@127.0.0.1/x")
    names = seed_module_names()
    assert {"engine", "async_session_maker", "get_session", "create_db_and_tables"} <= set(
        names
    ), names
    for name in names:
        if name == "DATABASE_URL":
            # a setting agentdb reads itself, from the same variable
            ours: Any = settings.from_environ({"DATABASE_URL": "postgres://u@h/d"}).database_url
            assert ours == "postgres://u@h/d"
        else:
            ours = getattr(agentdb, name)
        assert kind(ours) == kind(getattr(seed, name)), name
    # the names the seed page imports, star-import included
    assert set(names) - {"DATABASE_URL"} <= set(agentdb.__all__)


# -- the app, both ways ---------------------------------------------------------


async def test_seed_app_runs_on_agentdb_with_only_its_import_changed(
    on_agentdb: str, pg_dsn: str, admin_sql: AdminSQL, pg_admin_dsn: str, seed_dbname: str
) -> None:
    import seed_service.app

    assert AGENTDB_IMPORT in APP_FILE.read_text()
    ours = await exercise(seed_service.app.app)
    assert ours["health"] == {"database": "healthy"}
    assert ours["created"]["name"] == "planner" and ours["created"]["id"] >= 1
    assert ours["created"] in ours["agents"]
    assert ours["count"]["count"] == len(ours["agents"])
    # the database was created by create_db_and_tables (the fixture dropped it)
    assert admin_sql(pg_admin_dsn, f"SELECT 1 FROM pg_database WHERE datname = '{seed_dbname}'")

    # The same file with the seed's import, on the seed's own module (asyncpg), answers
    # the same way: the app is the seed's, unchanged but for that line.
    url = with_password(dsn_with_dbname(pg_dsn, seed_dbname))
    seed_db = seed_database_module(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    seed_app = load_seed_app()
    try:
        theirs = await exercise(seed_app.app)
    finally:
        await seed_db.engine.dispose()
        sys.modules.pop("seed_service.app_on_seed", None)
    assert theirs["health"] == {"database": "healthy"}
    assert theirs["created"]["name"] == "planner"
    assert theirs["created"] in theirs["agents"]
    assert theirs["count"]["count"] == len(theirs["agents"]) == len(ours["agents"]) + 1


# -- engine and async_session_maker ------------------------------------------------


async def test_engine_is_an_async_engine_that_follows_the_current_one(
    pg_dsn: str, pg_admin_dsn: str
) -> None:
    from agentdb import engine

    assert isinstance(engine, AsyncEngine)
    assert engine is agentdb.engine  # one object, whatever happens to the engine behind it

    async def database() -> str:
        async with engine.connect() as conn:
            return str(await conn.scalar(sa.text("SELECT current_database()")))

    try:
        settings.configure(database_url=agentdb_url(with_password(pg_dsn)))
        first = agentdb.get_engine()
        assert engine.sync_engine is first.sync_engine
        assert await database() == urlsplit(pg_dsn).path.lstrip("/")
        assert SECRET not in repr(engine) and "***" in repr(engine)

        settings.configure(database_url=agentdb_url(pg_admin_dsn))  # another database
        assert engine.url.database == "postgres"
        assert await database() == "postgres"
        assert engine.sync_engine is agentdb.get_engine().sync_engine is not first.sync_engine

        await agentdb.close_db_connection()  # the engine is rebuilt on next use
        assert await database() == "postgres"
        async with engine.begin() as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
        with pytest.raises(AttributeError, match="current engine"):
            engine.sync_engine = first.sync_engine  # type: ignore[misc]
    finally:
        await agentdb.close_db_connection()
        settings.reset()


async def test_async_session_maker_is_a_sessionmaker_whose_configure_lasts(
    pg_dsn: str, pg_admin_dsn: str
) -> None:
    from agentdb import async_session_maker

    assert isinstance(async_session_maker, async_sessionmaker)
    async_session_maker.configure(info={"configured": "by the app"})
    try:
        settings.configure(database_url=agentdb_url(pg_dsn))
        async with async_session_maker() as s:
            assert s.info["configured"] == "by the app"
            assert s.sync_session.bind is agentdb.get_engine().sync_engine
        settings.configure(database_url=agentdb_url(pg_admin_dsn))  # a new engine
        async with async_session_maker() as s:
            assert s.info["configured"] == "by the app"  # the configure() was not lost
            assert s.sync_session.bind is agentdb.get_engine().sync_engine
            assert await s.scalar(sa.text("SELECT current_database()")) == "postgres"
        async with async_session_maker.begin() as s:
            assert await s.scalar(sa.text("SELECT 1")) == 1
    finally:
        async_session_maker.kw.pop("info", None)
        await agentdb.close_db_connection()
        settings.reset()


# -- under uvicorn, DEBUG=true shows the SQL ----------------------------------------


def test_seed_app_under_uvicorn_with_debug_shows_its_sql(
    pg_dsn: str, seed_dbname: str
) -> None:
    url = with_password(dsn_with_dbname(pg_dsn, seed_dbname))
    env = dict(os.environ, DATABASE_URL=url.replace("postgresql://", "postgresql+asyncpg://"))
    env["DEBUG"] = "true"
    with uvicorn_process(TESTS, "seed_service.app:app", env, ready_path="/agents") as served:
        assert served.first is not None and served.first.status_code == 200, served.first
    out = served.output
    assert served.returncode in (0, -15), out
    assert "Traceback" not in out, out
    # SQLAlchemy's echo, in its format, from its logger: the request's statements
    assert "INFO sqlalchemy.engine.Engine BEGIN (implicit)" in out, out
    assert "INFO sqlalchemy.engine.Engine SELECT seed_agents.id, seed_agents.name" in out, out
    assert "FROM seed_agents" in out, out
    assert SECRET not in out
