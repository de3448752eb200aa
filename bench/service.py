"""The FastAPI service of workload (f): the seed's shape (``Depends(get_session)``,
SQLModel ``Agent`` rows), on agentdb or on SQLAlchemy+<driver>.

``python -m bench.service --driver asyncpg --dsn postgresql://... --port 8001 [--uvloop]``
"""

from __future__ import annotations

import argparse
import sys
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI
from sqlalchemy import select

from .models import Agent, session_factory


def build_app(driver: str, dsn: str) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        state["get_session"], dispose = await session_factory(driver, dsn)
        yield
        await dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session():  # noqa: ANN202 - delegates to the driver's generator
        async for session in state["get_session"]():
            yield session

    @app.get("/agents")
    async def list_agents(
        limit: int = 10, session: Any = Depends(get_session)  # noqa: B008
    ) -> list[Agent]:
        result = await session.execute(select(Agent).order_by(Agent.id).limit(limit))
        return list(result.scalars().all())

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.service")
    ap.add_argument("--driver", required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--uvloop", action="store_true")
    a = ap.parse_args()
    uvicorn.run(build_app(a.driver, a.dsn), host="127.0.0.1", port=a.port, log_level="warning",
                access_log=False, loop="uvloop" if a.uvloop else "asyncio", lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
