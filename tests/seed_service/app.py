"""The seed page's service: its handlers, startup and shutdown exactly as the page shows
them. Its one change for agentdb is the import: the seed imports these names from its own
``database`` module, this file from ``agentdb`` (tests/test_dropin_seed.py runs it both
ways).

Run: ``uvicorn --app-dir tests seed_service.app:app`` (``DATABASE_URL`` names the database).
"""

from __future__ import annotations

import warnings
from typing import Any

from fastapi import Depends, FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentdb import (
    async_session_maker,
    check_database_connection,
    close_db_connection,
    create_db_and_tables,
    engine,
    get_session,
)

from .models import SeedAgent

app = FastAPI(title="seed-shaped service")

with warnings.catch_warnings():  # on_event is deprecated in FastAPI, yet the seed uses it
    warnings.simplefilter("ignore", DeprecationWarning)

    @app.on_event("startup")
    async def startup_event() -> None:
        """Initialize database on application startup."""
        await create_db_and_tables()

    @app.on_event("shutdown")
    async def shutdown_event() -> None:
        """Close database connections on shutdown."""
        await close_db_connection()


@app.get("/agents")
async def get_agents(session: AsyncSession = Depends(get_session)) -> Any:
    result = await session.execute(select(SeedAgent))
    return result.scalars().all()


@app.post("/agents", status_code=201)
async def add_agent(name: str) -> Any:
    async with async_session_maker() as session:
        agent = SeedAgent(name=name)
        session.add(agent)
        await session.commit()
        return agent


@app.get("/agents/count")
async def count_agents() -> dict[str, int]:
    async with engine.connect() as conn:
        n = await conn.scalar(select(func.count()).select_from(SeedAgent))
        return {"count": int(n or 0)}


@app.get("/health")
async def health_check() -> dict[str, str]:
    """Check if database is reachable."""
    db_healthy = await check_database_connection()
    return {"database": "healthy" if db_healthy else "unhealthy"}
