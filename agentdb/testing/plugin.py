"""Testing layer: the pytest plugin: a PostgreSQL per test session, sessions rolled back per test.

Loaded automatically when agentdb is installed (entry point ``pytest11``: ``agentdb``);
``-p agentdb.testing.plugin`` loads it from a checkout. Nothing starts until a test asks
for one of its fixtures:

``agentdb_dsn`` (session)
    ``AGENTDB_TEST_DSN`` or ``DATABASE_URL`` when set, else a throwaway PostgreSQL cluster
    started once per session from the machine's binaries and removed at the end.
``agentdb_pool``
    A native ``agentdb.Pool`` on it, closed after the test.
``db_session``
    A SQLAlchemy ``AsyncSession`` (SQLModel's, when installed) inside an outer transaction
    that is rolled back after the test: the code under test may ``commit()`` (it commits a
    savepoint) and every test starts from the same tables. The tables are created once per
    session from ``agentdb_metadata``.
``agentdb_metadata`` (session)
    The ``MetaData`` to create: the ini option ``agentdb_metadata = module:attr``, else
    ``SQLModel.metadata``. Override the fixture to choose another way.
``agentdb_override``
    ``agentdb_override(app)`` points FastAPI's ``get_session`` dependency at ``db_session``
    for this test (``app.dependency_overrides``), undone afterwards.
``agentdb_database``
    Points the four drop-in functions (``get_session``, ``check_database_connection``...)
    at ``agentdb_dsn`` for this test, then closes their pool and forgets the setting.

The async fixtures run on the event loop of the test that requests them, whichever runs
it: pytest-asyncio (strict or auto mode, any ``loop_scope``) or anyio's plugin
(``@pytest.mark.anyio`` on the asyncio backend). A pool or session cannot outlive its loop,
so they are function-scoped; a test that fails because an object of another loop was used
gets a hint in its report.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest

from agentdb.dsn import normalize_url

from .cluster import INSTALL_HINT, ClusterError, PostgresNotFound, TempCluster

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.ext.asyncio import AsyncSession

    from agentdb.pool import Pool

__all__ = ["app_client", "load_metadata", "override_get_session"]

LOOP_HINT = (
    "agentdb: an object (pool, connection, engine or session) made on one event loop was "
    "used on another. agentdb's fixtures follow the loop of the test that requests them; "
    "a fixture of your own that makes a pool must run on that loop too: give it the same "
    "loop scope as the tests that use it (pytest-asyncio: "
    "@pytest_asyncio.fixture(loop_scope=...) matching @pytest.mark.asyncio(loop_scope=...)),"
    " or make it function-scoped."
)

_created_key = pytest.StashKey[set[tuple[str, int]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "agentdb_metadata",
        "module:attr of the SQLAlchemy MetaData whose tables db_session creates "
        "(default: sqlmodel:SQLModel.metadata)",
        default="",
    )


#: ``postgresql+asyncpg://...`` and the like as a plain ``postgresql://`` URL.
libpq_url = normalize_url


def load_metadata(spec: str) -> MetaData:
    """The object ``module:attr`` names (``attr`` may be dotted: ``app.models:Base.metadata``),
    as ``agentdb.database.load_metadata`` finds it; a spec that names none is a usage
    error (``pytest.UsageError``)."""
    from agentdb.database import load_metadata as load

    try:
        return load(spec)
    except ValueError as e:
        raise pytest.UsageError(f"agentdb_metadata: {e}") from None


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def agentdb_dsn() -> Iterator[str]:
    """The test database's URL (``postgresql://...``).

    ``AGENTDB_TEST_DSN`` or ``DATABASE_URL`` when set; otherwise a throwaway cluster
    (initdb in a temporary directory, a free port, trust authentication), started on first
    use and removed when the session ends.
    """
    env = os.environ.get("AGENTDB_TEST_DSN") or os.environ.get("DATABASE_URL")
    if env:
        yield normalize_url(env)
        return
    try:
        cluster = TempCluster()
        cluster.start()
    except PostgresNotFound as e:
        pytest.fail(
            "agentdb_dsn: no PostgreSQL to test against. Set AGENTDB_TEST_DSN (or "
            f"DATABASE_URL) to a server's URL, or install PostgreSQL. {e or INSTALL_HINT}",
            pytrace=False,
        )
    except ClusterError as e:
        pytest.fail(f"agentdb_dsn: could not start a throwaway PostgreSQL: {e}", pytrace=False)
    try:
        yield cluster.dsn()
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def agentdb_metadata(pytestconfig: pytest.Config) -> MetaData:
    """The MetaData whose tables ``db_session`` creates once per session."""
    spec = str(pytestconfig.getini("agentdb_metadata") or "").strip()
    if spec:
        return load_metadata(spec)
    try:
        from sqlmodel import SQLModel
    except ImportError:
        raise pytest.UsageError(
            "db_session needs tables to create: install sqlmodel, or set the ini option "
            "agentdb_metadata = 'yourapp.models:Base.metadata'"
        ) from None
    return SQLModel.metadata


def _async_fixture(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark one of agentdb's async fixtures; ``pytest_fixture_setup`` below runs it on the
    requesting test's loop. The pytest-asyncio mark keeps that plugin from warning about an
    unmarked async fixture in strict mode (the loop scope is chosen per test)."""
    func._agentdb_async = True  # type: ignore[attr-defined]
    func._force_asyncio_fixture = True  # type: ignore[attr-defined]
    return func


@pytest.fixture
@_async_fixture
async def agentdb_pool(agentdb_dsn: str) -> AsyncIterator[Pool]:
    """A native ``agentdb.Pool`` on ``agentdb_dsn`` (up to 10 connections), closed after
    the test."""
    import agentdb

    pool = await agentdb.create_pool(
        agentdb_dsn, pool_size=5, max_overflow=5, min_size=1, timeout=30
    )
    try:
        yield pool
    finally:
        await pool.close(timeout=10)


@pytest.fixture
@_async_fixture
async def db_session(
    agentdb_dsn: str, agentdb_metadata: MetaData, pytestconfig: pytest.Config
) -> AsyncIterator[AsyncSession]:
    """An ``AsyncSession`` in a transaction rolled back after the test.

    ``commit()`` in the code under test commits a savepoint
    (``join_transaction_mode="create_savepoint"``); ``expire_on_commit=False`` as in
    ``agentdb.get_session``.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    from agentdb.database import _SessionClass
    from agentdb.settings import agentdb_url

    engine = create_async_engine(agentdb_url(agentdb_dsn), pool_size=2, max_overflow=2)
    try:
        created = pytestconfig.stash.setdefault(_created_key, set())
        key = (agentdb_dsn, id(agentdb_metadata))
        if key not in created:
            async with engine.begin() as conn:
                await conn.run_sync(agentdb_metadata.create_all)
            created.add(key)
        async with engine.connect() as conn:
            outer = await conn.begin()
            session = _SessionClass(
                bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            try:
                yield session
            finally:
                await session.close()
                if outer.is_active:
                    await outer.rollback()
    finally:
        await engine.dispose()


@pytest.fixture
def agentdb_override(db_session: AsyncSession) -> Iterator[Callable[..., Any]]:
    """``agentdb_override(app)``: FastAPI's ``get_session`` yields ``db_session`` in this
    test (``agentdb_override(app, dependency=my_get_session)`` for another dependency).
    Returns the app; the override is removed after the test."""
    applied: list[_Override] = []

    def apply(app: Any, dependency: Callable[..., Any] | None = None) -> Any:
        applied.append(override_get_session(app, db_session, dependency=dependency))
        return app

    yield apply
    for o in reversed(applied):
        o.undo()


@pytest.fixture
@_async_fixture
async def agentdb_database(agentdb_dsn: str) -> AsyncIterator[str]:
    """Point ``get_session``, ``create_db_and_tables``, ``check_database_connection`` and
    ``close_db_connection`` at ``agentdb_dsn`` for this test; their pool is closed and the
    settings forgotten afterwards. Yields the URL."""
    from agentdb import settings
    from agentdb.database import close_db_connection

    settings.configure(database_url=agentdb_dsn)
    try:
        yield agentdb_dsn
    finally:
        await close_db_connection()
        settings.reset()


# -- FastAPI helpers --------------------------------------------------------------------


class _Override:
    """One dependency override; ``undo()`` (or leaving the ``with`` block) restores."""

    def __init__(self, app: Any, dependency: Callable[..., Any], replacement: Any) -> None:
        self.app = app
        self.dependency = dependency
        overrides: dict[Any, Any] = app.dependency_overrides
        self._had = dependency in overrides
        self._previous = overrides.get(dependency)
        overrides[dependency] = replacement
        self._done = False

    def undo(self) -> None:
        if self._done:
            return
        self._done = True
        overrides: dict[Any, Any] = self.app.dependency_overrides
        if self._had:
            overrides[self.dependency] = self._previous
        else:
            overrides.pop(self.dependency, None)

    def __enter__(self) -> _Override:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.undo()


def override_get_session(
    app: Any, session: AsyncSession, *, dependency: Callable[..., Any] | None = None
) -> _Override:
    """Make ``Depends(get_session)`` yield ``session`` (usually ``db_session``) in ``app``.

    ``dependency`` defaults to ``agentdb.get_session``; pass your own when the app wraps
    it. Use as a plain call (undo with ``.undo()`` or ``app.dependency_overrides.clear()``)
    or as ``with override_get_session(app, db_session): ...``.
    """
    if dependency is None:
        from agentdb.database import get_session

        dependency = get_session

    async def _test_session() -> AsyncIterator[AsyncSession]:
        yield session

    return _Override(app, dependency, _test_session)


@contextlib.asynccontextmanager
async def app_client(
    app: Any, session: AsyncSession | None = None, *, base_url: str = "http://test"
) -> AsyncIterator[Any]:
    """An ``httpx.AsyncClient`` calling ``app`` in-process; with ``session``, the app's
    ``get_session`` yields it (``override_get_session``) while the client is open.

    ``async with app_client(app, db_session) as client: r = await client.get("/agents")``
    """
    import httpx

    override = override_get_session(app, session) if session is not None else None
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
    finally:
        if override is not None:
            override.undo()


# -- running the async fixtures on the test's loop --------------------------------------


def _test_loop_scope(request: pytest.FixtureRequest) -> str:
    item = request.node
    scope = getattr(item, "_loop_scope", None)  # pytest-asyncio's items know theirs
    if isinstance(scope, str):
        return scope
    marker = item.get_closest_marker("asyncio")
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
        if scope:
            return str(scope)
    try:
        return str(request.config.getini("asyncio_default_test_loop_scope") or "function")
    except ValueError:
        return "function"


@functools.cache
def _for_pytest_asyncio(func: Callable[..., Any], loop_scope: str) -> Callable[..., Any]:
    """``func`` marked as pytest-asyncio marks its fixtures, running on ``loop_scope``."""

    @functools.wraps(func)
    async def fixture(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for value in func(*args, **kwargs):
            yield value

    fixture._force_asyncio_fixture = True  # type: ignore[attr-defined]
    fixture._loop_scope = loop_scope  # type: ignore[attr-defined]
    return fixture


def _for_anyio(func: Callable[..., Any], anyio_backend: Any) -> Callable[..., Any]:
    from anyio.pytest_plugin import extract_backend_and_options, get_runner

    name, options = extract_backend_and_options(anyio_backend)
    if name != "asyncio":
        pytest.fail(
            f"agentdb's fixtures run on asyncio only; this test's anyio_backend is {name!r}",
            pytrace=False,
        )

    @functools.wraps(func)
    def fixture(**kwargs: Any) -> Generator[Any, None, None]:
        with get_runner(name, options) as runner:
            yield from runner.run_asyncgen_fixture(func, kwargs)

    del fixture.__wrapped__  # pytest must see the generator, not the async generator
    return fixture


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Any:
    """Hand agentdb's async fixtures to whichever plugin runs the requesting test."""
    func = fixturedef.func
    if not getattr(func, "_agentdb_async", False) or not inspect.isasyncgenfunction(func):
        return (yield)
    if "anyio_backend" in request.fixturenames:
        replacement = _for_anyio(func, request.getfixturevalue("anyio_backend"))
    elif request.config.pluginmanager.has_plugin("asyncio"):
        replacement = _for_pytest_asyncio(func, _test_loop_scope(request))
    else:
        pytest.fail(
            f"{fixturedef.argname} is an async fixture: install pytest-asyncio, or mark the "
            "test @pytest.mark.anyio (anyio's plugin)",
            pytrace=False,
        )
    fixturedef.func = replacement
    try:
        return (yield)
    finally:
        fixturedef.func = func


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.excinfo is not None and "belongs to another event loop" in str(call.excinfo.value):
        report.sections.append(("agentdb", LOOP_HINT))
    return report
