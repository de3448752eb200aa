"""``agentdb.connect()`` and the Connection class users hold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from . import _core
from . import dsn as _dsn
from .transaction import Transaction

DEFAULT_STATEMENT_CACHE_SIZE = 100
DEFAULT_CANCEL_GRACE = 5.0


class Connection(_core.Connection):
    """A PostgreSQL connection (the C core) plus transactions.

    Several tasks may await statements on one connection at once: they run in the order
    they were issued. Use ``transaction()`` (or a pool's ``acquire()``) for work that must
    not interleave with other tasks' statements.
    """

    _transactions: list[Transaction]

    async def add_listener(
        self, channel: str, callback: Callable[[Connection, int, str, str], Any]
    ) -> None:
        """LISTEN on ``channel``; each NOTIFY calls ``callback(conn, pid, channel, payload)``
        on the loop. A pooled connection forgets its listeners when released."""
        listeners = self._listeners()
        callbacks = listeners.get(channel)
        if callbacks is None:
            await self.execute(f"LISTEN {_quote_ident(channel)}")
            callbacks = listeners.setdefault(channel, [])
        callbacks.append(callback)

    async def remove_listener(
        self, channel: str, callback: Callable[[Connection, int, str, str], Any]
    ) -> None:
        """Stop calling ``callback`` for ``channel`` (UNLISTEN when it was the last)."""
        listeners = self._listeners()
        callbacks = listeners.get(channel, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks and channel in listeners:
            del listeners[channel]
            if not self.is_closed():
                await self.execute(f"UNLISTEN {_quote_ident(channel)}")

    def add_log_listener(self, callback: Callable[[Connection, _core.Error], Any]) -> None:
        """Call ``callback(conn, message)`` for each NOTICE/WARNING the server sends;
        ``message`` is an exception instance with ``.severity``, ``.sqlstate``, ..."""
        self._notice_handlers().append(callback)

    def remove_log_listener(self, callback: Callable[[Connection, _core.Error], Any]) -> None:
        handlers = self._notice_handlers()
        if callback in handlers:
            handlers.remove(callback)

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> Transaction:
        """A transaction block: ``async with conn.transaction(): ...`` (nested: savepoints)."""
        return Transaction(self, isolation=isolation, readonly=readonly, deferrable=deferrable)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def connect(
    dsn: str | None = None,
    *,
    timeout: float | None = 60.0,
    command_timeout: float | None = None,
    statement_cache_size: int = DEFAULT_STATEMENT_CACHE_SIZE,
    connection_class: type[Connection] = Connection,
    **params: Any,
) -> Connection:
    """Open a connection.

    ``dsn`` is a URL (``postgresql://``, ``postgres://``, ``postgresql+asyncpg://``, ...) or a
    libpq keyword/value string; keyword arguments (``host``, ``port``, ``user``, ``password``,
    ``database``, ``ssl``, ``server_settings`` or any libpq keyword) override it.
    ``timeout`` bounds the whole connect, name resolution included; ``command_timeout`` is
    the default for every statement; ``statement_cache_size=0`` uses no named prepared
    statements (for PgBouncer in transaction mode).
    """
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be a positive number or None")
    if statement_cache_size < 0:
        raise ValueError("statement_cache_size must be >= 0")
    options = _dsn.parse(dsn, params)
    if timeout is None and options.get("connect_timeout", "0").strip("0 ") != "":
        timeout = float(options["connect_timeout"])
    secret = options.get("password")
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        resolving = _dsn.resolve_hosts(options)
        options = await (resolving if timeout is None else asyncio.wait_for(resolving, timeout))
    except asyncio.TimeoutError:
        raise TimeoutError(f"timed out resolving the host name ({timeout} s)") from None
    conn = connection_class()
    conn._transactions = []
    conn._configure(statement_cache_size, command_timeout or 0.0, DEFAULT_CANCEL_GRACE)
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    try:
        await conn._connect(list(options), list(options.values()), remaining, secret)
    except BaseException:
        conn.terminate()
        raise
    return conn
