"""The example service with a ``lifespan`` (FastAPI's current form).

Run: ``uvicorn examples.service.app_lifespan:app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from agentdb import close_db_connection, create_db_and_tables

from .routes import router


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await create_db_and_tables()
    yield
    await close_db_connection()


app = FastAPI(title="agents (agentdb example, lifespan)", lifespan=lifespan)
app.include_router(router)
