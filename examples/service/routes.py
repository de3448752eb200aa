"""The service's routes, written the usual SQLAlchemy-async way (only the import is agentdb's)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentdb import check_database_connection, get_session

from .models import Agent, AgentCreate

router = APIRouter()


@router.get("/agents")
async def get_agents(session: AsyncSession = Depends(get_session)) -> Any:
    result = await session.execute(select(Agent).order_by(Agent.created_at))
    return result.scalars().all()


@router.post("/agents", status_code=201)
async def create_agent(data: AgentCreate, session: AsyncSession = Depends(get_session)) -> Any:
    agent = Agent.model_validate(data)
    session.add(agent)
    await session.commit()
    return agent


@router.get("/agents/slow")
async def slow_agents(
    seconds: float = 2.0, session: AsyncSession = Depends(get_session)
) -> Any:
    """Holds a connection for ``seconds`` (the server sleeps): for disconnect tests."""
    from sqlalchemy import text

    await session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
    return {"slept": seconds}


@router.get("/health")
async def health_check() -> dict[str, str]:
    db_healthy = await check_database_connection()
    return {"database": "healthy" if db_healthy else "unhealthy"}
