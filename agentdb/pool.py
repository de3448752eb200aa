"""Driver layer: ``agentdb.create_pool()`` and the Pool class: the C pool plus graceful close."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

from . import _aio, _core
from .connection import Connection, connect
from .logs import logger as _logger

DEFAULT_CLOSE_TIMEOUT = 30.0


class Pool(_core.Pool):
    """A pool of connections (the C core).

    ``acquire()`` checks a connection out exclusively; ``fetch``/``fetchrow``/``fetchval``/
    ``execute`` run one statement on a pooled connection without an exclusive checkout.
    """

    async def executemany(
        self, query: str, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        """``Connection.executemany`` on a checked-out connection."""
        async with self.acquire() as conn:
            await conn.executemany(query, args, timeout=timeout)

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


async def create_pool(
    dsn: str | None = None,
    *,
    pool_size: int = 20,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    pool_recycle: float = 3600.0,
    max_idle: float = 300.0,
    pre_ping: bool = True,
    ping_after: float = 10.0,
    reset_timeout: float = 5.0,
    reset: str | ResetFunction | None = None,
    min_size: int = 1,
    pool_class: type[Pool] = Pool,
    **connect_kwargs: Any,
) -> Pool:
    """Create a pool and open ``min_size`` connections (so a bad URL fails here).

    At most ``pool_size + max_overflow`` connections exist; an overflow connection closes
    when it comes back while ``pool_size`` are idle. ``acquire`` raises ``PoolTimeout``
    after ``pool_timeout`` seconds. Connections older than ``pool_recycle`` or idle longer
    than ``max_idle`` are replaced. Liveness is checked without a round trip (the socket is
    watched); with ``pre_ping`` a connection idle longer than ``ping_after`` seconds is
    pinged before it is handed out. Other keyword arguments go to ``connect()``.

    ``reset`` says what happens to a session when its connection comes back (from
    ``acquire()``, or from a shortcut that changed the session). Always: an open
    transaction is rolled back, and the connection's Python-side state (transaction
    stack, listeners, log listeners) is cleared. Then, with ``None`` or ``"session"``
    (the default), a session whose user changed it (SET, LISTEN, temporary tables,
    advisory locks, cursors, PREPARE, ...) is reset as ``Connection.reset()`` does;
    both are pipelined ahead of the next user's statements, and a connection that ran
    only ordinary statements costs no reset at all. ``"transaction"`` only rolls back
    (session settings persist for the physical connection, as SQLAlchemy's pools do).
    A coroutine function ``reset(conn)`` runs after the rollback on every release, as
    asyncpg's ``reset=`` does (``await conn.reset()`` inside it keeps the default); if it
    raises, the connection is closed.
    """
    if min_size < 0 or min_size > pool_size:
        raise ValueError("min_size must be between 0 and pool_size")
    opener = functools.partial(connect, dsn, **connect_kwargs)
    pool = pool_class(
        opener,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_recycle=pool_recycle,
        max_idle=max_idle,
        pre_ping=pre_ping,
        ping_after=ping_after,
        reset_timeout=reset_timeout,
        reset=reset if reset is None or isinstance(reset, str) else _reset_runner(reset),
    )
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
        max_overflow,
        pool_timeout,
        pre_ping,
    )
    return pool
