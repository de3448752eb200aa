"""``agentdb.connect()`` and the Connection class users hold."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from . import _core
from . import dsn as _dsn
from .logs import describe_target
from .logs import logger as _logger
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

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> Transaction:
        """A transaction block: ``async with conn.transaction(): ...`` (nested: savepoints)."""
        return Transaction(self, isolation=isolation, readonly=readonly, deferrable=deferrable)


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
    target = describe_target(options) if _logger.isEnabledFor(logging.INFO) else ""
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
    except BaseException as e:
        conn.terminate()
        if target and isinstance(e, Exception):
            _logger.info("connect to %s failed: %s: %s", target, type(e).__name__, e)
        raise
    if target:
        _logger.info(
            "connected to %s (backend pid %s, tls %s)",
            target,
            conn.get_backend_pid(),
            "on" if conn.ssl_in_use() else "off",
        )
    return conn
