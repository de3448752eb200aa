"""The example service in the seed's form: startup/shutdown with ``@app.on_event``.

Run: ``uvicorn examples.service.app:app`` (``DATABASE_URL`` names the database).
"""

from __future__ import annotations

import warnings

from fastapi import FastAPI

from agentdb import close_db_connection, create_db_and_tables

from .routes import router

app = FastAPI(title="agents (agentdb example)")
app.include_router(router)

with warnings.catch_warnings():  # on_event is deprecated in FastAPI, yet still in use
    warnings.simplefilter("ignore", DeprecationWarning)

    @app.on_event("startup")
    async def startup_event() -> None:
        await create_db_and_tables()

    @app.on_event("shutdown")
    async def shutdown_event() -> None:
        await close_db_connection()
