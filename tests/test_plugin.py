"""The pytest plugin (agentdb.testing.plugin), run on small suites through pytester."""

from __future__ import annotations

import os
import textwrap

import pytest

import agentdb
from agentdb.testing import plugin

PLUGIN = ("-p", "agentdb.testing.plugin", "-p", "no:cacheprovider")
# The inner suites run in a subprocess (SQLAlchemy's compiled modules cannot be imported
# twice in one process, which pytester's in-process runs would do), importing agentdb from
# where this process found it: the installed package, or a checkout built in place.
AGENTDB_PATH = os.path.dirname(os.path.dirname(os.path.abspath(agentdb.__file__)))

MODELS = """
    import uuid
    from sqlmodel import Field, SQLModel

    class Item(SQLModel, table=True):
        __tablename__ = "plugin_items"
        id: int | None = Field(default=None, primary_key=True)
        name: str
"""


@pytest.fixture(autouse=True)
def _inner_env(monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", AGENTDB_PATH + (os.pathsep + path if path else ""))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


@pytest.fixture
def suite(
    pytester: pytest.Pytester, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """A user's project: the plugin on the suite's database."""
    monkeypatch.setenv("AGENTDB_TEST_DSN", pg_dsn)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    pytester.makepyfile(models=textwrap.dedent(MODELS))
    pytester.syspathinsert()
    return pytester


def ini(pytester: pytest.Pytester, mode: str, extra: str = "") -> None:
    pytester.makeini(
        f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n{extra}"
    )


ROLLBACK_TESTS = """
    from sqlmodel import select
    from models import Item

    {mark}
    async def test_1_commit(db_session):
        db_session.add(Item(name="a"))
        await db_session.commit()          # the code under test commits
        rows = (await db_session.exec(select(Item))).all()
        assert [r.name for r in rows] == ["a"]

    {mark}
    async def test_2_clean(db_session):
        assert (await db_session.exec(select(Item))).all() == []

    {mark}
    async def test_3_pool(agentdb_pool):
        assert await agentdb_pool.fetchval("SELECT count(*) FROM plugin_items") == 0
"""


def test_auto_mode_rollback_per_test(suite: pytest.Pytester) -> None:
    ini(suite, "auto")
    suite.makepyfile(test_user=textwrap.dedent(ROLLBACK_TESTS.format(mark="")))
    result = suite.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=3)


def test_strict_mode_and_loop_scopes(suite: pytest.Pytester) -> None:
    ini(suite, "strict")
    suite.makepyfile(
        test_user=textwrap.dedent(ROLLBACK_TESTS.format(mark="@pytest.mark.asyncio")).replace(
            "from sqlmodel", "import pytest\nfrom sqlmodel", 1
        )
    )
    suite.makepyfile(
        test_scopes=textwrap.dedent(
            """
            import asyncio
            import pytest

            @pytest.mark.asyncio(loop_scope="module")
            async def test_module_loop(agentdb_pool):
                assert agentdb_pool.get_loop() is asyncio.get_running_loop()
                assert await agentdb_pool.fetchval("SELECT 1") == 1

            @pytest.mark.asyncio(loop_scope="module")
            async def test_module_loop_session(db_session):
                from sqlalchemy import text
                assert (await db_session.execute(text("SELECT 2"))).scalar() == 2

            @pytest.mark.asyncio
            async def test_function_loop(agentdb_pool):
                assert agentdb_pool.get_loop() is asyncio.get_running_loop()
            """
        )
    )
    result = suite.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=6)


ANYIO_TESTS = """
    import asyncio
    import pytest
    from sqlmodel import select
    from models import Item

    @pytest.fixture
    def anyio_backend():
        return "asyncio"

    @pytest.mark.anyio
    async def test_1(db_session, agentdb_pool):
        assert agentdb_pool.get_loop() is asyncio.get_running_loop()
        db_session.add(Item(name="x"))
        await db_session.commit()
        assert len((await db_session.exec(select(Item))).all()) == 1

    @pytest.mark.anyio
    async def test_2(db_session):
        assert (await db_session.exec(select(Item))).all() == []
"""


def test_anyio_plugin_alone(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\n")
    suite.makepyfile(test_user=textwrap.dedent(ANYIO_TESTS))
    result = suite.runpytest_subprocess(*PLUGIN, "-p", "no:asyncio")
    result.assert_outcomes(passed=2)


def test_anyio_next_to_pytest_asyncio_strict(suite: pytest.Pytester) -> None:
    ini(suite, "strict")
    suite.makepyfile(test_user=textwrap.dedent(ANYIO_TESTS))
    result = suite.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=2)


def test_anyio_trio_backend_is_refused(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\n")
    suite.makepyfile(
        test_user="""
import pytest
@pytest.fixture
def anyio_backend():
    return "trio"
@pytest.mark.anyio
async def test_t(agentdb_pool):
    pass
"""
    )
    result = suite.runpytest_subprocess(*PLUGIN, "-p", "no:asyncio")
    result.stdout.fnmatch_lines(["*run on asyncio only*"])


def test_without_an_async_plugin(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\n")
    suite.makepyfile(
        test_user="""
def test_sync(agentdb_pool):
    pass
"""
    )
    result = suite.runpytest_subprocess(*PLUGIN, "-p", "no:asyncio", "-p", "no:anyio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*install pytest-asyncio*"])


def test_metadata_from_ini(suite: pytest.Pytester) -> None:
    ini(suite, "auto", "agentdb_metadata = mytables:Base.metadata\n")
    suite.makepyfile(
        mytables="""
from sqlalchemy import Column, Integer, Text
from sqlalchemy.orm import DeclarativeBase

class Base(DeclarativeBase):
    pass

class Note(Base):
    __tablename__ = "plugin_notes"
    id = Column(Integer, primary_key=True)
    body = Column(Text)
""",
        test_user="""
from sqlalchemy import select, func
from mytables import Note

async def test_a(db_session):
    db_session.add(Note(body="hi"))
    await db_session.commit()
    assert await db_session.scalar(select(func.count()).select_from(Note)) == 1

async def test_b(db_session):
    assert await db_session.scalar(select(func.count()).select_from(Note)) == 0
""",
    )
    result = suite.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=2)


def test_metadata_ini_must_name_module_and_attr() -> None:
    with pytest.raises(pytest.UsageError, match="module:attr"):
        plugin.load_metadata("nocolon")
    with pytest.raises(pytest.UsageError, match="not a SQLAlchemy MetaData"):
        plugin.load_metadata("os:path")


FASTAPI_APP = """
from fastapi import Depends, FastAPI
from sqlmodel import select
from sqlalchemy.ext.asyncio import AsyncSession
from agentdb import get_session, check_database_connection
from models import Item

app = FastAPI()

@app.post("/items", status_code=201)
async def create(name: str, session: AsyncSession = Depends(get_session)):
    item = Item(name=name)
    session.add(item)
    await session.commit()
    return item

@app.get("/items")
async def items(session: AsyncSession = Depends(get_session)):
    return [i.name for i in (await session.exec(select(Item))).all()]

@app.get("/health")
async def health():
    return {"database": await check_database_connection()}
"""


def test_fastapi_override(suite: pytest.Pytester) -> None:
    ini(suite, "auto")
    suite.makepyfile(
        service=FASTAPI_APP,
        test_user="""
import httpx
from agentdb import get_session
from agentdb.testing import app_client, override_get_session
from service import app

async def test_three_lines(db_session):
    async with app_client(app, db_session) as client:
        r = await client.post("/items", params={"name": "a"})
    assert r.status_code == 201 and r.json()["name"] == "a"
    assert get_session not in app.dependency_overrides   # undone

async def test_fixture(agentdb_override):
    transport = httpx.ASGITransport(app=agentdb_override(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.post("/items", params={"name": "b"})
        assert (await client.get("/items")).json() == ["b"]   # a's row was rolled back

def test_override_undone_after_the_fixture():
    assert app.dependency_overrides == {}

async def test_context_manager(db_session):
    with override_get_session(app, db_session):
        assert get_session in app.dependency_overrides
    assert get_session not in app.dependency_overrides

async def test_health(agentdb_database):
    async with app_client(app) as client:
        assert (await client.get("/health")).json() == {"database": True}
""",
    )
    result = suite.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=5)


def test_loop_mismatch_hint(suite: pytest.Pytester) -> None:
    ini(suite, "strict")
    suite.makepyfile(
        test_user="""
import agentdb, pytest, pytest_asyncio

@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def my_pool(agentdb_dsn):
    pool = await agentdb.create_pool(agentdb_dsn, pool_size=1, min_size=1)
    yield pool
    await pool.close()

@pytest.mark.asyncio
async def test_wrong_loop(my_pool):
    await my_pool.fetchval("SELECT 1")
"""
    )
    result = suite.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*belongs to another event loop*", "*same*loop scope*"])


def test_nothing_starts_unless_asked(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTDB_TEST_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    ini(pytester, "auto")
    pytester.makeconftest(
        """
import agentdb.testing.cluster as c

def forbidden(*a, **k):
    raise AssertionError("a cluster was started")

c.TempCluster.start = forbidden
"""
    )
    pytester.makepyfile(test_user="async def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=1)


def test_throwaway_cluster(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTDB_TEST_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    roots = pytester.path / "roots.txt"
    ini(pytester, "auto")
    pytester.makeconftest(
        f"""
import agentdb.testing.cluster as c

real_start = c.TempCluster.start

def start(self):
    out = real_start(self)
    with open({str(roots)!r}, "a") as f:
        f.write(self.root + "\\n")
    return out

c.TempCluster.start = start
"""
    )
    pytester.makepyfile(
        test_user="""
async def test_a(agentdb_dsn, agentdb_pool):
    assert "127.0.0.1" in agentdb_dsn and ":5432/" not in agentdb_dsn
    assert await agentdb_pool.fetchval("SELECT 1") == 1

def test_b(agentdb_dsn):
    assert agentdb_dsn
"""
    )
    result = pytester.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=2)
    started = roots.read_text().split()
    assert len(started) == 1  # once per session
    assert not os.path.exists(started[0])  # removed at the end


def test_no_binaries_names_the_package(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTDB_TEST_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    ini(pytester, "auto")
    pytester.makeconftest(
        """
import agentdb.testing.cluster as c

def not_found(*a, **k):
    raise c.PostgresNotFound(c.INSTALL_HINT)

c.find_bindir = not_found
"""
    )
    pytester.makepyfile(test_user="def test_a(agentdb_dsn):\n    pass\n")
    result = pytester.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*AGENTDB_TEST_DSN*apt-get install postgresql*"])


def test_database_url_is_used(
    pytester: pytest.Pytester, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTDB_TEST_DSN", raising=False)
    monkeypatch.setenv("DATABASE_URL", pg_dsn.replace("postgresql://", "postgresql+asyncpg://"))
    ini(pytester, "auto")
    pytester.makepyfile(
        test_user=f"""
def test_a(agentdb_dsn):
    assert agentdb_dsn == {pg_dsn!r}
"""
    )
    pytester.runpytest_subprocess(*PLUGIN).assert_outcomes(passed=1)


def test_libpq_url() -> None:
    assert plugin.libpq_url("postgresql+asyncpg://u:p@h/d") == "postgresql://u:p@h/d"
    assert plugin.libpq_url("postgres+psycopg://h/d") == "postgres://h/d"
    assert plugin.libpq_url("postgresql://h/d") == "postgresql://h/d"
