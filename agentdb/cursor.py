"""Driver layer: server-side cursors, ``conn.cursor(query, *args)``.

As asyncpg's CursorFactory, CursorIterator and Cursor. A cursor is a SQL cursor (``DECLARE
... NO SCROLL CURSOR``) read with ``FETCH`` and skipped with ``MOVE``; it lives inside its
transaction, so it needs one. Its statements bypass the statement cache (each names its
cursor: cached, they would only evict the application's statements): one round trip each,
the arguments typed as with ``statement_cache_size=0``. DECLARE changes the session, so a
pooled connection that declared one is reset (``CLOSE ALL``) when it goes back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any

from . import _core
from . import errors as _errors
from ._sql import quote_ident

if TYPE_CHECKING:
    from .connection import Connection

DEFAULT_PREFETCH = 50


class _Base:
    """What a cursor and a cursor's iterator share: the connection, the SQL cursor."""

    __slots__ = ("_conn", "_query", "_args", "_timeout", "_lease", "_name", "_exhausted")

    def __init__(
        self,
        conn: Connection,
        query: str,
        args: tuple[Any, ...],
        timeout: float | None,
        lease: int,
    ) -> None:
        self._conn = conn
        self._query = query
        self._args = args
        self._timeout = timeout
        self._lease = lease  # the connection's when conn.cursor() was called
        self._name = ""
        self._exhausted = False

    def _check(self) -> Connection:
        conn = self._conn
        if conn._lease != self._lease:
            raise _core.InterfaceError(
                "cursor: the underlying connection has been released back to the pool"
            )
        if conn.is_closed():
            raise _core.InterfaceError("cursor: the connection is closed")
        return conn

    async def _declare(self) -> None:
        conn = self._check()
        if not conn.is_in_transaction():
            raise _errors.lookup("25P01")("cursor cannot be created outside of a transaction")
        conn._cursor_seq += 1
        name = f"__adb_cursor_{conn._cursor_seq}"
        await conn._query_uncached(
            f"DECLARE {quote_ident(name)} NO SCROLL CURSOR FOR {self._query}",
            self._args,
            timeout=self._timeout,
        )
        self._name = name

    async def _exec(self, sql: str, timeout: float | None) -> tuple[list[_core.Record], str]:
        conn = self._check()
        rows, _names, _types, status = await conn._query_uncached(
            sql, (), timeout=self._timeout if timeout is None else timeout
        )
        return rows, status

    async def _fetch(self, n: int, timeout: float | None) -> list[_core.Record]:
        rows, _ = await self._exec(f"FETCH FORWARD {n} FROM {quote_ident(self._name)}", timeout)
        if len(rows) < n:
            self._exhausted = True
        return rows


def _positive(what: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what} must be an int, not {type(n).__name__}")
    if n <= 0:
        raise _core.InterfaceError(f"{what} must be greater than zero")
    return n


class CursorFactory:
    """``conn.cursor(query, *args)``: ``async for record in ...`` (inside a transaction)
    reads the rows ``prefetch`` at a time; ``await ...`` gives a Cursor."""

    __slots__ = ("_conn", "_query", "_args", "_prefetch", "_timeout", "_lease")

    def __init__(
        self,
        conn: Connection,
        query: str,
        args: tuple[Any, ...],
        prefetch: int | None,
        timeout: float | None,
    ) -> None:
        if prefetch is not None:
            _positive("prefetch", prefetch)
        self._conn = conn
        self._query = query
        self._args = args
        self._prefetch = prefetch
        self._timeout = timeout
        self._lease = conn._lease

    def __aiter__(self) -> CursorIterator:
        prefetch = DEFAULT_PREFETCH if self._prefetch is None else self._prefetch
        return CursorIterator(
            self._conn, self._query, self._args, self._timeout, self._lease, prefetch
        )

    def __await__(self) -> Generator[Any, None, Cursor]:
        if self._prefetch is not None:
            raise _core.InterfaceError(
                "prefetch argument can only be specified for iterable cursor"
            )
        return self._open().__await__()

    async def _open(self) -> Cursor:
        cursor = Cursor(self._conn, self._query, self._args, self._timeout, self._lease)
        await cursor._declare()
        return cursor


class CursorIterator(_Base, AsyncIterator[_core.Record]):
    """``async for`` over a cursor: ``prefetch`` rows per FETCH."""

    __slots__ = ("_prefetch", "_buffer", "_pos")

    def __init__(
        self,
        conn: Connection,
        query: str,
        args: tuple[Any, ...],
        timeout: float | None,
        lease: int,
        prefetch: int,
    ) -> None:
        super().__init__(conn, query, args, timeout, lease)
        self._prefetch = prefetch
        self._buffer: list[_core.Record] = []
        self._pos = 0

    def __aiter__(self) -> CursorIterator:
        return self

    async def __anext__(self) -> _core.Record:
        if self._pos < len(self._buffer):
            self._pos += 1
            return self._buffer[self._pos - 1]
        if self._exhausted:
            raise StopAsyncIteration
        if not self._name:
            await self._declare()
        self._buffer = await self._fetch(self._prefetch, None)
        self._pos = 0
        if self._exhausted:
            # the server's cursor is done: close it now rather than at the transaction's end
            await self._exec(f"CLOSE {quote_ident(self._name)}", None)
        if not self._buffer:
            raise StopAsyncIteration
        self._pos = 1
        return self._buffer[0]


class Cursor(_Base):
    """An open cursor (``await conn.cursor(...)``): ``fetch(n)``, ``fetchrow()``,
    ``forward(n)``."""

    __slots__ = ()

    async def fetch(self, n: int, *, timeout: float | None = None) -> list[_core.Record]:
        """The next ``n`` rows (fewer at the end, [] past it)."""
        return await self._fetch(_positive("n", n), timeout)

    async def fetchrow(self, *, timeout: float | None = None) -> _core.Record | None:
        """The next row, or None past the end."""
        rows = await self._fetch(1, timeout)
        return rows[0] if rows else None

    async def forward(self, n: int, *, timeout: float | None = None) -> int:
        """Skip ``n`` rows; returns how many were skipped."""
        _, status = await self._exec(
            f"MOVE FORWARD {_positive('n', n)} FROM {quote_ident(self._name)}", timeout
        )
        return int(status.split()[-1])

    def __repr__(self) -> str:
        return f"<agentdb.Cursor {self._query!r}>"
