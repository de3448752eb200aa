"""Endpoint tests for the example service: each runs in a transaction rolled back afterwards."""

from service.app import app
from service.models import Agent
from sqlmodel import select

from agentdb.testing import app_client


async def test_create_agent(db_session):
    async with app_client(app, db_session) as client:
        r = await client.post("/agents", json={"name": "ada"})
    assert r.status_code == 201 and r.json()["name"] == "ada"


async def test_every_test_starts_clean(db_session):
    async with app_client(app, db_session) as client:
        assert (await client.get("/agents")).json() == []


async def test_create_then_list(db_session):
    async with app_client(app, db_session) as client:
        await client.post("/agents", json={"name": "a", "config": {"model": "x"}})
        await client.post("/agents", json={"name": "b"})
        names = [a["name"] for a in (await client.get("/agents")).json()]
    assert names == ["a", "b"]
    # the endpoint committed; the test's session sees the rows too
    rows = (await db_session.exec(select(Agent).order_by(Agent.name))).all()
    assert [a.config for a in rows] == [{"model": "x"}, {}]


async def test_invalid_body_is_rejected(db_session):
    async with app_client(app, db_session) as client:
        r = await client.post("/agents", json={"description": "no name"})
    assert r.status_code == 422


async def test_with_the_override_fixture(agentdb_override):
    async with app_client(agentdb_override(app)) as client:
        assert (await client.post("/agents", json={"name": "c"})).status_code == 201


async def test_health(agentdb_database):
    async with app_client(app) as client:
        assert (await client.get("/health")).json() == {"database": "healthy"}


async def test_native_pool(agentdb_pool):
    assert await agentdb_pool.fetchval("SELECT $1::int + 1", 41) == 42
