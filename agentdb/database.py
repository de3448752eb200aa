"""Drop-in layer: the four FastAPI functions, on SQLAlchemy async and ``postgresql+agentdb``.

Replace a service's ``database.py`` (an asyncpg engine, ``async_session_maker``,
``get_session``...) by ``from agentdb import ...``; the handlers stay as they are, and the
module's usual names are here: ``engine`` (an ``AsyncEngine`` standing for the current
engine) and ``async_session_maker`` (an ``async_sessionmaker``). Nothing connects at
import: the engine and its pool are made on first use, and made again after
``close_db_connection()`` or ``configure()``.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import event, text
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
    from sqlalchemy.engine import Engine
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
_background: set[asyncio.Task[Any]] = set()
# Engines replaced by configure(), each with the task that disposes of it once its
# checked-out connections are all back (close_db_connection() takes them over).
_retiring: dict[AsyncEngine, asyncio.Task[None]] = {}
# How often a retiring engine's pool is looked at besides its checkins (connections taken
# with the native API, ``get_pool().acquire()``, come back without a SQLAlchemy checkin).
_DRAIN_POLL = 1.0

# Serializes create_all between workers starting at once (pg_advisory_xact_lock key).
_CREATE_LOCK_KEY = 0x61676E74  # "agnt"


def get_engine() -> AsyncEngine:
    """The ``AsyncEngine`` on ``postgresql+agentdb`` built from the settings (made on first
    use; a ``configure()`` call or ``close_db_connection()`` makes the next call build anew).

    With ``DEBUG=true`` it is built with ``echo=True``: SQLAlchemy prints each statement,
    as the seed's engine did. An engine replaced after ``configure()`` is drained: its
    checked-out connections finish their work, and it is disposed of when the last one
    comes back.
    """
    global _engine, _engine_generation
    gen = _settings.generation()
    if _engine is not None and _engine_generation == gen:
        return _engine
    s = _settings.get_settings()
    if s.debug:
        _logs.mask_passwords_in_echo()  # before the first statement is echoed
    engine = create_async_engine(
        s.sqlalchemy_url,
        echo=s.debug,
        hide_parameters=not s.log_parameters,
        pool_size=s.pool_size,
        max_overflow=s.max_overflow,
        pool_timeout=s.pool_timeout,
        pool_recycle=s.pool_recycle,
        pool_pre_ping=s.pre_ping,
    )
    _logs.install_slow_query_warnings(engine, s)
    old, _engine, _engine_generation = _engine, engine, gen
    if old is not None:
        _retire(old)
    return engine


class CurrentEngine(AsyncEngine):
    """``agentdb.engine``: an ``AsyncEngine`` that always stands for the drop-in's current
    engine (``get_engine()``), also after ``configure()`` or ``close_db_connection()``.

    A module that did ``from agentdb import engine`` keeps one object; every use of it
    (``engine.begin()``, ``engine.connect()``, ``engine.sync_engine``, ``engine.url``,
    ``engine.echo``, ``engine.dispose()``, ``AsyncSession(engine)``) goes to the engine
    current at that moment. ``isinstance(engine, AsyncEngine)`` holds; ``engine is
    get_engine()`` does not (``get_engine()`` is the engine itself), and
    ``engine.execution_options(...)`` is an ``AsyncEngine`` on the engine of that moment.
    Event listeners belong to one engine: register them on ``engine.sync_engine`` after
    the last ``configure()``, or on the ``Engine`` class.
    """

    __slots__ = ()

    def __init__(self) -> None:  # no engine of its own: nothing is built at import
        pass

    @property  # type: ignore[override]
    def sync_engine(self) -> Engine:
        return get_engine().sync_engine

    @sync_engine.setter
    def sync_engine(self, value: Engine) -> None:
        raise AttributeError(
            "agentdb.engine always stands for the current engine: use agentdb.configure()"
        )

    @property
    def _proxied(self) -> Engine:
        return get_engine().sync_engine

    def __repr__(self) -> str:
        return f"<agentdb.engine: the current {self.sync_engine!r}>"


engine = CurrentEngine()

#: ``async_session_maker()``: an ``AsyncSession`` (SQLModel's when installed,
#: ``expire_on_commit=False``) on the engine current when it is made. A real
#: ``async_sessionmaker`` bound to ``engine``, so ``.configure(...)`` on it lasts.
async_session_maker: async_sessionmaker[Any] = async_sessionmaker(
    engine, class_=_SessionClass, expire_on_commit=False
)


def _retire(old: AsyncEngine) -> None:
    """Dispose of an engine ``configure()`` replaced: once its checked-out connections are
    back when a loop runs (they belong to it), at once otherwise."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _dispose_now(old)
        return
    _retiring[old] = loop.create_task(_drain(old))


def _dispose_now(old: AsyncEngine) -> None:
    """Close an engine's connections at once, without awaiting (no loop to await in)."""
    try:
        old.sync_engine.dispose()
    except Exception as e:  # closing what is left; nothing for a caller to handle
        logger.warning("agentdb: closing a replaced engine failed: %r", e)


async def _drain(old: AsyncEngine) -> None:
    pool = old.sync_engine.pool
    loop = asyncio.get_running_loop()
    idle = asyncio.Event()

    def check() -> None:
        if pool.checkedout() <= 0:  # type: ignore[attr-defined]
            idle.set()

    def on_checkin(*_args: Any) -> None:
        loop.call_soon(check)  # after the pool has taken the connection back

    event.listen(pool, "checkin", on_checkin)
    try:
        check()
        while not idle.is_set():
            try:
                await asyncio.wait_for(idle.wait(), _DRAIN_POLL)
            except TimeoutError:
                check()
    except asyncio.CancelledError:
        # The loop is ending (or close_db_connection() took the engine over, having
        # removed it from _retiring): close what is left unless someone else will.
        if _retiring.pop(old, None) is not None:
            _dispose_now(old)
        raise
    finally:
        event.remove(pool, "checkin", on_checkin)
    _retiring.pop(old, None)
    await old.dispose()


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


def _missing_database(error: BaseException, dbname: str) -> bool:
    """Whether a failed connection was refused with SQLSTATE 3D000 (invalid_catalog_name)
    for ``dbname``.

    libpq keeps a connection failure's SQLSTATE to itself (agentdb's connect errors carry
    none), so the server's message for 3D000 is what tells it: ``database "name" does not
    exist`` naming exactly this database. Any other refusal (a missing role is 28000,
    ``role "x" does not exist``; a wrong password; no permission) is not it.
    """
    code = getattr(error, "sqlstate", None)
    if code is not None:
        return bool(code == "3D000")
    return f'database "{dbname}" does not exist' in str(error)


async def _create_database_if_missing(engine: AsyncEngine) -> None:
    url = engine.url
    dbname = url.database
    if not dbname:
        return
    _cargs, cparams = engine.dialect.create_connect_args(url)
    try:
        conn = await agentdb_connect(dict(cparams))
    except _errors.Error as e:
        if not _missing_database(e, dbname):
            raise
    else:
        await conn.close()
        return
    # Created through the maintenance database, which confirms it is missing indeed.
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

    Only a missing database is created (the server refused the connection with SQLSTATE
    3D000, ``database "name" does not exist``); any other refusal is raised as it is: a
    role that does not exist (28000), a wrong password, a database closed to connections.
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
    back, bounded), and the engines ``configure()`` replaced that are still draining.
    Safe to call twice; any later call of the other functions reopens."""
    global _engine
    current, _engine = _engine, None
    engines = [e for e in (current,) if e is not None]
    for old, task in list(_retiring.items()):
        del _retiring[old]  # ours to close now, not the drain task's
        task.cancel()
        engines.append(old)
    for e in engines:
        try:
            await e.dispose()
        except Exception:
            _dispose_now(e)
