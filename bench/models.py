"""The ``Agent`` table of the ORM and HTTP workloads (e, f), and the sessions over it.

``get_session`` here is the code a service on SQLAlchemy+asyncpg has (the seed's
``database.py``: an engine with ``pool_size=20, max_overflow=10, pool_pre_ping=True`` and
an async generator for ``Depends``); for agentdb the same code runs on ``agentdb.get_session``.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlmodel import Field, SQLModel

from . import util
from .drivers import NotAvailable


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Agent(SQLModel, table=True):
    __tablename__ = "bench_agent"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    role: str
    status: str
    score: float
    created_at: datetime.datetime = Field(default_factory=lambda: _now())


SETUP_SQL = """
CREATE TABLE bench_agent (id serial PRIMARY KEY, name varchar NOT NULL, role varchar NOT NULL,
                          status varchar NOT NULL, score float8 NOT NULL,
                          created_at timestamptz NOT NULL);
INSERT INTO bench_agent (name, role, status, score, created_at)
  SELECT 'agent-' || i, (ARRAY['planner', 'coder', 'reviewer'])[1 + i % 3], 'idle', i / 7.0,
         '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 1000) AS i;
ANALYZE bench_agent;
"""
TEARDOWN_SQL = "DROP TABLE bench_agent;"

SessionFactory = Callable[[], AsyncIterator[Any]]


def agentdb_dialect_reason() -> str | None:
    """None when agentdb's SQLAlchemy dialect is there, else why the row is n/a."""
    try:
        import agentdb.sqlalchemy as dialect
    except Exception as e:  # noqa: BLE001
        return f"agentdb dialect not available ({e})"
    if not hasattr(dialect, "AgentdbDialect"):
        return "agentdb dialect not available (agentdb.sqlalchemy has no AgentdbDialect)"
    return None


async def session_factory(driver: str, dsn: str) -> tuple[SessionFactory, Callable[[], Any]]:
    """(get_session, async dispose) for driver "agentdb", "asyncpg" or "psycopg"."""
    if driver == "agentdb":
        reason = agentdb_dialect_reason()
        if reason:
            raise NotAvailable(reason)
        import agentdb

        if hasattr(agentdb, "get_session"):
            os.environ["DATABASE_URL"] = util.sqlalchemy_url(dsn, "agentdb")

            async def dispose_agentdb() -> None:
                closer = getattr(agentdb, "close_db_connection", None)
                if closer is not None:
                    await closer()

            return agentdb.get_session, dispose_agentdb
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    engine = create_async_engine(util.sqlalchemy_url(dsn, driver), pool_size=20,
                                 max_overflow=10, pool_pre_ping=True)
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def get_session() -> AsyncIterator[Any]:
        async with maker() as session:
            try:
                yield session
            except Exception:
                await session.rollback()
                raise

    return get_session, engine.dispose
