"""Driver layer: ``agentdb.create_pool()`` and the Pool class: the C pool plus graceful close."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from types import TracebackType
from typing import Any

from . import _aio, _core
from .connection import Connection, connect
from .logs import logger as _logger

DEFAULT_CLOSE_TIMEOUT = 30.0
DEFAULT_POOL_SIZE = 20
DEFAULT_MAX_OVERFLOW = 10


class Pool(_core.Pool):
    """A pool of connections (the C core).

    ``acquire()`` checks a connection out exclusively; ``fetch``/``fetchrow``/``fetchval``/
    ``execute`` run one statement on a pooled connection without an exclusive checkout
    (with ``setup=``, they acquire: see ``create_pool``).
    """

    _min_size = 0

    async def executemany(
        self, query: str, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        """``Connection.executemany`` on a checked-out connection."""
        async with self.acquire() as conn:
            await conn.executemany(query, args, timeout=timeout)

    async def fetchmany(
        self,
        query: str,
        args: Iterable[Sequence[Any]],
        *,
        timeout: float | None = None,
        record_class: type[Any] | None = None,
    ) -> list[_core.Record]:
        """``Connection.fetchmany`` on a checked-out connection."""
        rows: list[_core.Record] = []
        async with self.acquire() as conn:
            rows = await conn.fetchmany(query, args, timeout=timeout, record_class=record_class)
        return rows

    async def expire_connections(self) -> None:
        """Replace every connection open now: idle ones when next taken, the others when
        they come back (asyncpg's ``expire_connections``, after a credentials or server
        change)."""
        self._expire()

    def get_size(self) -> int:
        """Connections open now (in use, idle, shared or being reset)."""
        size: int = self.stats()["size"]
        return size

    def get_idle_size(self) -> int:
        idle: int = self.stats()["idle"]
        return idle

    def get_min_size(self) -> int:
        return self._min_size

    def get_max_size(self) -> int:
        """``pool_size + max_overflow``."""
        size: int = self.stats()["max_size"]
        return size

    # asyncpg's COPY shortcuts: the Connection method of that name on a checked-out
    # connection, with the same arguments.
    async def copy_records_to_table(self, table_name: str, **kwargs: Any) -> str:
        async with self.acquire() as conn:
            result: str = await conn.copy_records_to_table(table_name, **kwargs)
        return result

    async def copy_to_table(self, table_name: str, **kwargs: Any) -> str:
        async with self.acquire() as conn:
            result: str = await conn.copy_to_table(table_name, **kwargs)
        return result

    async def copy_from_table(self, table_name: str, **kwargs: Any) -> Any:
        async with self.acquire() as conn:
            out = await conn.copy_from_table(table_name, **kwargs)
        return out

    async def copy_from_query(self, query: str, **kwargs: Any) -> Any:
        async with self.acquire() as conn:
            out = await conn.copy_from_query(query, **kwargs)
        return out

    async def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Close gracefully: waiters fail now with InterfaceError, idle connections close
        now, checked-out connections close when released; after ``timeout`` seconds the
        rest are terminated. Never hangs."""
        drained = self._begin_close()
        try:
            await _aio.wait_for(asyncio.shield(drained), timeout)
        except TimeoutError:
            pass
        finally:
            self.terminate()
            if _logger.isEnabledFor(logging.INFO):
                s = self.stats()
                _logger.info(
                    "pool closed: %d connections opened, %d closed, %d lost, "
                    "%d acquire timeouts",
                    s["opened"],
                    s["closed"],
                    s["lost"],
                    s["timeouts"],
                )

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


ResetFunction = Callable[[Connection], Awaitable[Any]]
ConnectionCallback = Callable[[Connection], Awaitable[Any]]


class SetupAcquire:
    """``pool.acquire()`` when the pool has a ``setup=`` coroutine: the connection is
    handed out once ``setup(conn)`` has run on it (released again if it raises)."""

    __slots__ = ("_pool", "_ctx", "_setup", "_conn")

    def __init__(self, pool: Pool, ctx: _core.AcquireContext, setup: ConnectionCallback) -> None:
        self._pool = pool
        self._ctx = ctx
        self._setup = setup
        self._conn: Connection | None = None

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._acquire().__await__()

    async def _acquire(self) -> Connection:
        conn: Connection = await self._ctx
        try:
            await self._setup(conn)
        except BaseException:
            await self._pool.release(conn)
            raise
        return conn

    async def __aenter__(self) -> Connection:
        self._conn = await self._acquire()
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)


class _SetupPool(Pool):
    """A pool with ``setup=``: ``acquire()`` runs it, and the shortcuts acquire (so that
    ``setup`` runs for their statement too, as asyncpg's pool methods do)."""

    _setup: ConnectionCallback

    def acquire(self, *, timeout: float | None = None) -> Any:
        return SetupAcquire(self, super().acquire(timeout=timeout), self._setup)

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args, timeout=timeout)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args, timeout=timeout)

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args, column=column, timeout=timeout)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        async with self.acquire() as conn:
            return await conn.execute(query, *args, timeout=timeout)


def _opener(
    dsn: str | None,
    init: ConnectionCallback | None,
    reset_session: bool,
    connect_kwargs: dict[str, Any],
) -> Callable[[], Awaitable[Connection]]:
    """What the pool opens connections with: ``connect()``, then ``init(conn)``; a
    connection whose ``init`` raised is closed, and the error is the open's. With
    ``reset_session`` (the pool resets its borrowers' sessions), the session is reset
    after ``init`` as after any user, so that every borrower, the first included, gets
    the same connect-time session."""
    if init is None:
        return functools.partial(connect, dsn, **connect_kwargs)

    async def open_and_init() -> Connection:
        conn = await connect(dsn, **connect_kwargs)
        try:
            await init(conn)
            if reset_session:
                await conn.reset()
        except BaseException:
            conn.terminate()
            raise
        return conn

    return open_and_init


def _reset_runner(reset: ResetFunction) -> Callable[[Connection], Awaitable[bool]]:
    """The coroutine function the core runs for ``create_pool(reset=...)``: True when the
    user's reset succeeded and the connection may be handed out again; a reset that
    raises is logged and its connection closed."""

    async def run(conn: Connection) -> bool:
        try:
            await reset(conn)
        except Exception:
            _logger.exception("the pool's reset function failed; the connection is closed")
            return False
        return True

    return run


class PoolCreation:
    """What ``create_pool()`` returns: ``await`` it for the pool, or ``async with
    create_pool(...) as pool:`` (closed on leaving), as asyncpg's Pool allows both."""

    __slots__ = ("_coro", "_pool")

    def __init__(self, coro: Coroutine[Any, Any, Pool]) -> None:
        self._coro = coro
        self._pool: Pool | None = None

    def __await__(self) -> Generator[Any, None, Pool]:
        return self._coro.__await__()

    async def __aenter__(self) -> Pool:
        self._pool = await self._coro
        return self._pool

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            await self._pool.close()



def create_pool(
    dsn: str | None = None,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout: float = 30.0,
    pool_recycle: float = 3600.0,
    max_idle: float = 300.0,
    pre_ping: bool = True,
    ping_after: float = 10.0,
    reset_timeout: float = 5.0,
    reset: str | ResetFunction | None = None,
    init: ConnectionCallback | None = None,
    setup: ConnectionCallback | None = None,
    min_size: int = 1,
    pool_class: type[Pool] = Pool,
    max_size: int | None = None,
    max_inactive_connection_lifetime: float | None = None,
    **connect_kwargs: Any,
) -> PoolCreation:
    """Create a pool and open ``min_size`` connections (so a bad URL fails here):
    ``pool = await create_pool(...)``, or ``async with create_pool(...) as pool:`` (closed
    on leaving).

    At most ``pool_size + max_overflow`` connections exist; an overflow connection closes
    when it comes back while ``pool_size`` are idle. ``acquire`` raises ``PoolTimeout``
    after ``pool_timeout`` seconds. Connections older than ``pool_recycle`` or idle longer
    than ``max_idle`` are replaced. Liveness is checked without a round trip (the socket is
    watched); with ``pre_ping`` a connection idle longer than ``ping_after`` seconds is
    pinged before it is handed out. Other keyword arguments go to ``connect()``.

    ``reset`` says what happens to a session when its connection comes back (from
    ``acquire()``, or from a shortcut that changed the session). Always: an open
    transaction is rolled back, and the connection's Python-side state (transaction
    stack, listeners, log listeners, query loggers, termination listeners, prepared
    statements' validity) is cleared. Then, with ``None`` or ``"session"``
    (the default), a session whose user changed it (SET, LISTEN, temporary tables,
    advisory locks, cursors, PREPARE, ...) is reset as ``Connection.reset()`` does;
    both are pipelined ahead of the next user's statements, and a connection that ran
    only ordinary statements costs no reset at all. ``"transaction"`` only rolls back
    (session settings persist for the physical connection, as SQLAlchemy's pools do).
    A coroutine function ``reset(conn)`` runs after the rollback on every release, as
    asyncpg's ``reset=`` does (``await conn.reset()`` inside it keeps the default); if it
    raises, the connection is closed.

    ``init(conn)`` (a coroutine function) runs once on each new connection before the
    pool uses it; if it raises, the connection is closed and the open fails. What it
    leaves in the connection's statement cache stays (``conn.prepare()`` in ``init`` warms
    it). Session state it changes (SET, temporary tables) follows the reset rule, as a
    borrower's does: with the default rule the session is reset right after ``init``, so
    that no borrower sees it (with asyncpg the first borrower would, and the first
    release undo it): put settings in ``server_settings=``, the connect-time state every
    reset returns to; with ``reset="transaction"`` (or a reset coroutine that keeps it)
    it stays for the connection's life.

    ``setup(conn)`` runs on each ``acquire()`` before the connection is handed out
    (released again if it raises); with ``setup``, the shortcuts
    (``pool.fetch``...) acquire a connection too, so that ``setup`` runs for them, as
    asyncpg's pool methods do, and they lose the shared connections' pipelining.

    asyncpg's ``max_size=N`` is ``pool_size=N, max_overflow=0`` (the default without it:
    ``pool_size=20, max_overflow=10``); its ``max_inactive_connection_lifetime`` is
    ``max_idle``; its ``max_queries`` and ``connect`` are not taken (TypeError).
    """
    if max_size is not None:
        if pool_size is not None or max_overflow is not None:
            raise TypeError("pass max_size (asyncpg's) or pool_size/max_overflow, not both")
        pool_size, max_overflow = max_size, 0
    if max_inactive_connection_lifetime is not None:
        max_idle = max_inactive_connection_lifetime
    for name, why in (
        ("max_queries", "connections are replaced by age (pool_recycle) and idleness (max_idle)"),
        ("connect", "pass init= (run after each connect) or a connection_class"),
    ):
        if connect_kwargs.pop(name, None) is not None:
            raise TypeError(f"create_pool() does not take asyncpg's {name}=: {why}")
    return PoolCreation(
        _create_pool(
            dsn,
            dict(
                pool_size=DEFAULT_POOL_SIZE if pool_size is None else pool_size,
                max_overflow=DEFAULT_MAX_OVERFLOW if max_overflow is None else max_overflow,
                pool_timeout=pool_timeout,
                pool_recycle=pool_recycle,
                max_idle=max_idle,
                pre_ping=pre_ping,
                ping_after=ping_after,
                reset_timeout=reset_timeout,
                reset=reset if reset is None or isinstance(reset, str) else _reset_runner(reset),
            ),
            init,
            setup,
            min_size,
            pool_class,
            connect_kwargs,
        )
    )


async def _create_pool(
    dsn: str | None,
    pool_args: dict[str, Any],
    init: ConnectionCallback | None,
    setup: ConnectionCallback | None,
    min_size: int,
    pool_class: type[Pool],
    connect_kwargs: dict[str, Any],
) -> Pool:
    pool_size: int = pool_args["pool_size"]
    if min_size < 0 or min_size > pool_size:
        raise ValueError("min_size must be between 0 and pool_size")
    if init is not None and not callable(init):
        raise TypeError("init must be a coroutine function taking the connection")
    if setup is not None and not callable(setup):
        raise TypeError("setup must be a coroutine function taking the connection")
    opener = _opener(dsn, init, pool_args["reset"] in (None, "session"), connect_kwargs)
    if setup is not None:
        pool_class = (
            _SetupPool
            if pool_class is Pool
            else type(pool_class.__name__, (_SetupPool, pool_class), {})
        )
    pool = pool_class(opener, **pool_args)
    pool._min_size = min_size
    if setup is not None:
        pool._setup = setup  # type: ignore[attr-defined]
    if min_size:
        results = await asyncio.gather(*(opener() for _ in range(min_size)), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        for r in results:
            if isinstance(r, Connection):
                if failure is None:
                    pool._adopt(r)
                else:
                    r.terminate()
        if failure is not None:
            pool.terminate()
            raise failure
    _logger.info(
        "pool created: pool_size=%d max_overflow=%d pool_timeout=%s pre_ping=%s",
        pool_size,
        pool_args["max_overflow"],
        pool_args["pool_timeout"],
        pool_args["pre_ping"],
    )
    return pool
