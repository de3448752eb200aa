"""The seed's database module, as services like it carry it (the "before" of
docs/migrating-from-sqlalchemy.md): an asyncpg engine with ``echo`` when ``DEBUG=true``,
``async_session_maker`` and the four functions. The tests compare agentdb's exports with
this module's, and run the app on it as well as on agentdb."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel

DATABASE_URL = os.getenv(
    "DATABASE_URL", "postgresql+asyncpg://postgres:postgres@localhost:5432/agentplatform"
)
engine = create_async_engine(
    DATABASE_URL,
    echo=os.getenv("DEBUG") == "true",
    pool_size=20,
    max_overflow=10,
    pool_pre_ping=True,
)
async_session_maker = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def create_db_and_tables() -> None:
    """Create every table of ``SQLModel.metadata``."""
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)


async def get_session() -> AsyncIterator[AsyncSession]:
    """An ``AsyncSession`` per request."""
    async with async_session_maker() as session:
        yield session


async def check_database_connection() -> bool:
    """Whether the database answers."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


async def close_db_connection() -> None:
    """Close the engine's connections."""
    await engine.dispose()
