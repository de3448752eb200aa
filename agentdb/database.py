"""Drop-in layer: the four FastAPI functions, on SQLAlchemy async and ``postgresql+agentdb``.

Replace a service's ``database.py`` (an asyncpg engine, ``async_session_maker``,
``get_session``...) by ``from agentdb import ...``; the handlers stay as they are.
Nothing connects at import: the engine and its pool are made on first use, and made again
after ``close_db_connection()``.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as _SAAsyncSession

import agentdb.sqlalchemy  # noqa: F401  (registers postgresql+agentdb)

from . import _aio
from . import errors as _errors
from . import logs as _logs
from . import settings as _settings
from ._sql import quote_ident
from .sqlalchemy.pool import AgentdbPool

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.ext.asyncio import AsyncSession

    from .pool import Pool

logger = _logs.logger  # the one "agentdb" logger (agentdb.logs says what it logs)

try:  # SQLModel's AsyncSession adds .exec(); use it when SQLModel is there
    from sqlmodel.ext.asyncio.session import AsyncSession as _SQLModelAsyncSession

    class AgentdbSession(_SQLModelAsyncSession):
        """SQLModel's ``AsyncSession`` (``.exec()``) whose ``.execute()`` is SQLAlchemy's
        without SQLModel's deprecation warning: handlers written for SQLAlchemy's
        ``AsyncSession`` (``session.execute(select(...))``) run unchanged and quietly."""

        execute = _SAAsyncSession.execute  # type: ignore[assignment]

    _SessionClass: type[_SAAsyncSession] = AgentdbSession
except ImportError:  # pragma: no cover - sqlmodel is optional
    _SessionClass = _SAAsyncSession

_engine: AsyncEngine | None = None
_engine_generation = -1
_maker: async_sessionmaker[Any] | None = None
_background: set[asyncio.Task[Any]] = set()

# Serializes create_all between workers starting at once (pg_advisory_xact_lock key).
_CREATE_LOCK_KEY = 0x61676E74  # "agnt"


def get_engine() -> AsyncEngine:
    """The ``AsyncEngine`` on ``postgresql+agentdb`` built from the settings (made on first
    use; a ``configure()`` call or ``close_db_connection()`` makes the next call build anew)."""
    global _engine, _engine_generation, _maker
    gen = _settings.generation()
    if _engine is not None and _engine_generation == gen:
        return _engine
    if _engine is not None:  # stale after configure(): drop it, its pool closes now
        _terminate_engine(_engine)
    s = _settings.get_settings()
    engine = create_async_engine(
        s.sqlalchemy_url,
        pool_size=s.pool_size,
        max_overflow=s.max_overflow,
        pool_timeout=s.pool_timeout,
        pool_recycle=s.pool_recycle,
        pool_pre_ping=s.pre_ping,
        hide_parameters=not (s.debug and s.log_parameters),
    )
    _logs.install_statement_logging(engine, s)  # DEBUG echo, slow-query warnings
    _engine, _engine_generation = engine, gen
    _maker = async_sessionmaker(engine, class_=_SessionClass, expire_on_commit=False)
    return engine


def _terminate_engine(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool
    if isinstance(pool, AgentdbPool) and pool._native is not None:
        try:
            pool._native.terminate()
        except Exception:
            pass
        pool._native = None


def _session_maker() -> async_sessionmaker[Any]:
    get_engine()
    assert _maker is not None
    return _maker


class _LazySessionMaker:
    """``async_session_maker()``: an ``AsyncSession`` (``expire_on_commit=False``) on the
    current engine; the engine is made on first use."""

    def __call__(self, **kw: Any) -> AsyncSession:
        return _session_maker()(**kw)  # type: ignore[no-any-return]

    def begin(self) -> Any:
        return _session_maker().begin()

    def __getattr__(self, name: str) -> Any:
        return getattr(_session_maker(), name)

    def __repr__(self) -> str:
        return "<agentdb async_session_maker>"


async_session_maker = _LazySessionMaker()


async def get_pool() -> Pool:
    """The native ``agentdb.Pool`` under the engine (created on first use, in this loop).

    Use it for statements without the ORM: ``await (await get_pool()).fetchval("SELECT 1")``.
    """
    engine = get_engine()
    pool = engine.sync_engine.pool
    if not isinstance(pool, AgentdbPool):
        raise _errors.InterfaceError("the engine's pool is not agentdb's pool")
    _cargs, cparams = engine.dialect.create_connect_args(engine.url)
    return await pool.native_pool_async(dict(cparams))


def _finish_in_background(aw: Awaitable[Any]) -> Awaitable[Any]:
    """Run ``aw`` to completion even when the awaiting task is cancelled."""
    task = asyncio.ensure_future(aw)
    _background.add(task)

    def _done(t: asyncio.Task[Any]) -> None:
        _background.discard(t)
        if not t.cancelled() and t.exception() is not None:
            logger.warning("agentdb: releasing a session failed: %r", t.exception())

    task.add_done_callback(_done)
    return asyncio.shield(task)


async def _end_session(session: AsyncSession, rollback: bool) -> None:
    try:
        if rollback:
            await session.rollback()
    finally:
        await session.close()


async def get_session() -> AsyncIterator[AsyncSession]:
    """Yield an ``AsyncSession`` for one request: ``Depends(get_session)``.

    The session is SQLModel's ``AsyncSession`` when SQLModel is installed (so ``.exec()``
    works) with ``expire_on_commit=False``. An exception in the handler rolls the session
    back; the session's connection always goes back to the pool, also when the request
    task is cancelled because the client went away (the release runs shielded).
    """
    session = async_session_maker()
    failed = False
    try:
        yield session
    except Exception:
        # Roll back (expiring what the session loaded) only for an error: GeneratorExit
        # (the generator closed early) and cancellation need no more than close(), which
        # ends the transaction too; expiring 1,000 loaded objects costs 3 ms.
        failed = True
        raise
    finally:
        await _finish_in_background(_end_session(session, failed))


async def _create_database_if_missing(engine: AsyncEngine) -> None:
    url = engine.url
    dbname = url.database
    if not dbname:
        return
    _cargs, cparams = engine.dialect.create_connect_args(url)
    try:
        conn = await agentdb_connect(dict(cparams))
    except _errors.Error as e:
        if getattr(e, "sqlstate", None) != "3D000" and "does not exist" not in str(e):
            raise
    else:
        await conn.close()
        return
    admin = dict(cparams, database="postgres")
    conn = await agentdb_connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if not exists:
            try:
                await conn.execute(f"CREATE DATABASE {quote_ident(dbname)}")
                logger.info("agentdb: created database %s", dbname)
            except _errors.Error as e:
                # a concurrent creator: DuplicateDatabase, or the unique index of pg_database
                if getattr(e, "sqlstate", None) not in ("42P04", "23505"):
                    raise
    finally:
        await conn.close()


async def agentdb_connect(cparams: dict[str, Any]) -> Any:
    import agentdb

    params = dict(cparams)
    params.setdefault("timeout", 10.0)
    return await agentdb.connect(**params)


def load_metadata(spec: str) -> MetaData:
    """The ``MetaData`` that ``module:attr`` names, for ``create_db_and_tables`` (``attr``
    may be dotted: ``app.models:Base.metadata``; an object with a ``metadata`` attribute,
    such as a declarative base or ``SQLModel``, gives its metadata). ValueError when
    ``spec`` is not ``module:attr`` or names no ``MetaData``; importing the module raises
    what it raises. Used by ``python -m agentdb init-db`` and the pytest plugin's
    ``agentdb_metadata`` ini option."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected module:attr (like app.models:SQLModel.metadata), not {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not hasattr(obj, "create_all") and hasattr(obj, "metadata"):
        obj = obj.metadata
    if not hasattr(obj, "create_all"):
        raise ValueError(f"{spec!r} is not a SQLAlchemy MetaData")
    return cast("MetaData", obj)


async def create_db_and_tables(metadata: MetaData | None = None) -> None:
    """Create the database named in ``DATABASE_URL`` when it does not exist (through the
    maintenance database ``postgres``), then every table of ``metadata`` (default:
    ``SQLModel.metadata``). Idempotent, and safe when several workers start at once
    (``CREATE DATABASE`` races are tolerated; ``create_all`` runs under an advisory lock).
    """
    if metadata is None:
        from sqlmodel import SQLModel

        metadata = SQLModel.metadata
    engine = get_engine()
    await _create_database_if_missing(engine)
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CREATE_LOCK_KEY}
        )
        await conn.run_sync(metadata.create_all)


async def check_database_connection(timeout: float = 5.0) -> bool:
    """``True`` when the database answers ``SELECT 1`` within ``timeout`` seconds, else
    ``False``. Never raises (a cancellation of the caller still propagates), and returns
    within ``timeout`` even when the server is down or its host drops packets."""

    async def probe() -> bool:
        pool = await get_pool()
        return bool(await pool.fetchval("SELECT 1", timeout=timeout) == 1)

    try:
        return await _aio.wait_for(probe(), timeout)
    except asyncio.CancelledError:
        raise
    except BaseException as e:  # noqa: BLE001 - a health check reports, it never raises
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        logger.debug("agentdb: database check failed: %s", type(e).__name__)
        return False


async def close_db_connection() -> None:
    """Close the engine and its native pool (checked-out connections close as they come
    back, bounded). Safe to call twice; any later call of the other functions reopens."""
    global _engine, _maker
    engine, _engine, _maker = _engine, None, None
    if engine is None:
        return
    try:
        await engine.dispose()
    except Exception:
        _terminate_engine(engine)
