"""(e) the ORM: a session per request selecting 10 and 1,000 ``Agent`` rows, and
insert+commit; 50 tasks. agentdb's ``get_session`` against the same code on
SQLAlchemy+asyncpg (and SQLAlchemy+psycopg)."""

from __future__ import annotations

import itertools

from sqlalchemy import select

from .drivers import Driver, Op
from .models import SETUP_SQL, TEARDOWN_SQL, Agent, SessionFactory, session_factory
from .workloads import Case, Prepared

TASKS = 50


def touch_agents(agents: list[Agent]) -> None:
    for a in agents:
        _ = (a.id, a.name, a.role, a.status, a.score, a.created_at)


def select_op(get_session: SessionFactory, limit: int) -> Op:
    stmt = select(Agent).order_by(Agent.id).limit(limit)

    async def op() -> int:
        gen = get_session()
        session = await gen.__anext__()
        try:
            agents = (await session.execute(stmt)).scalars().all()
            touch_agents(agents)
        finally:
            await gen.aclose()
        return len(agents)

    return op


def insert_op(get_session: SessionFactory) -> Op:
    counter = itertools.count()

    async def op() -> int:
        gen = get_session()
        session = await gen.__anext__()
        try:
            session.add(Agent(name=f"new-{next(counter)}", role="coder", status="new", score=0.5))
            await session.commit()
        finally:
            await gen.aclose()
        return 1

    return op


def _case(name: str, label: str, make_op) -> Case:  # noqa: ANN001
    async def prepare(driver: Driver) -> Prepared:
        get_session, dispose = await session_factory(driver.name, driver.dsn)
        return Prepared([make_op(get_session)] * TASKS, dispose)

    return Case("e", name, label, TASKS, prepare, setup_sql=SETUP_SQL,
                teardown_sql=TEARDOWN_SQL, rows=True)


def cases_e() -> list[Case]:
    return [
        _case("e.orm.select10", f"ORM session per request, select 10 Agents, {TASKS} tasks",
              lambda gs: select_op(gs, 10)),
        _case("e.orm.select1000", f"ORM session per request, select 1,000 Agents, {TASKS} tasks",
              lambda gs: select_op(gs, 1000)),
        _case("e.orm.insert", f"ORM session per request, insert + commit, {TASKS} tasks",
              insert_op),
    ]
