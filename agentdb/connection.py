"""Driver layer: ``agentdb.connect()`` and the Connection class users hold."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from . import _aio, _core
from . import copy_format as _copy
from . import dsn as _dsn
from ._sql import qualified, quote_ident
from .cursor import CursorFactory
from .logs import describe_target
from .logs import logger as _logger
from .prepared import PreparedStatement, check_record_class, lookup_types
from .sslcontext import ssl_keywords
from .transaction import Transaction
from .types import Attribute, ServerVersion, Type, parse_server_version

DEFAULT_STATEMENT_CACHE_SIZE = 100
DEFAULT_CANCEL_GRACE = 5.0

# The core's statement methods a query logger times (the first argument is the SQL; the
# second the arguments, for those whose arguments come as one object, the rest as *args).
_LOGGED_METHODS = (
    "execute",
    "fetch",
    "fetchrow",
    "fetchval",
    "executemany",
    "_fetchmany",
    "_query",
    "_query_uncached",
)
_ARGS_AS_ONE = frozenset({"executemany", "_fetchmany", "_query", "_query_uncached"})


# asyncpg's connect() arguments agentdb does not take, and why (a clear error, rather
# than libpq's "invalid connection option").
_NOT_TAKEN = {
    "loop": "agentdb uses the running event loop",
    "record_class": "rows are agentdb.Record, a final type",
    "max_cached_statement_lifetime": (
        "cached statements stay until evicted (LRU, statement_cache_size) or found stale "
        "(prepared again at once)"
    ),
    "max_cacheable_statement_size": "every statement text is cacheable",
    "direct_tls": "libpq 17+ takes sslnegotiation='direct' instead",
}


class LoggedQuery(NamedTuple):
    """What ``add_query_logger``'s callbacks get, as asyncpg's LoggedQuery. ``conn_params``
    are the connection's keywords without its secrets."""

    query: str
    args: Any
    timeout: float | None
    elapsed: float
    exception: BaseException | None
    conn_addr: tuple[str, str]
    conn_params: dict[str, str]


class Connection(_core.Connection):
    """A PostgreSQL connection (the C core) plus transactions.

    Several tasks may await statements on one connection at once: they run in the order
    they were issued. Use ``transaction()`` (or a pool's ``acquire()``) for work that must
    not interleave with other tasks' statements.
    """

    _cursor_seq = 0  # names this connection's cursors (cursor.py)
    _addr: tuple[str, str] = ("", "")
    _params: dict[str, str] = {}  # noqa: RUF012 - replaced per connection by connect()

    def __init__(self) -> None:
        super().__init__()
        self._types: dict[int, Type] = {}  # type descriptions for prepare() (prepared.py)
        self._query_loggers: list[Callable[[LoggedQuery], Any]] = []
        self._loggers_lease = -1
        self._callback_tasks: set[asyncio.Task[Any]] = set()

    def get_server_pid(self) -> int:
        """The backend's process id (asyncpg's name for ``get_backend_pid()``)."""
        return self.get_backend_pid()

    def get_server_version(self) -> ServerVersion:
        """The server's version, as asyncpg's ServerVersion: ``(15, 0, 8, 'final', 0)``."""
        text = self.get_parameter_status("server_version")
        if text is None:
            num = self._server_version_num()
            major = num // 10000
            return ServerVersion(major, 0 if major >= 10 else num // 100 % 100, num % 100,
                                 "final", 0)
        return parse_server_version(text)

    async def prepare(
        self,
        query: str,
        *,
        name: str | None = None,
        timeout: float | None = None,
        record_class: type[Any] | None = None,
    ) -> PreparedStatement:
        """Prepare ``query`` (Parse + Describe, nothing run) and describe it: its parameter
        and result types. Its executions reuse the prepared statement as long as the
        connection's statement cache keeps it (it is prepared again transparently when
        not). It belongs to this connection: released to a pool, it raises InterfaceError."""
        check_record_class(record_class)
        if not isinstance(query, str):
            raise TypeError(f"the query must be a str, not {type(query).__name__}")
        params, desc = await self._describe(query, timeout=timeout)
        columns = tuple(zip(desc.names, desc.types, strict=True)) if desc is not None else ()
        await lookup_types(self, [*params, *(oid for _, oid in columns)], timeout)
        types = self._types
        return PreparedStatement(
            self,
            query,
            name,
            tuple(types[oid] for oid in params),
            tuple(Attribute(col, types[oid]) for col, oid in columns),
        )

    def cursor(
        self,
        query: str,
        *args: Any,
        prefetch: int | None = None,
        timeout: float | None = None,
        record_class: type[Any] | None = None,
    ) -> CursorFactory:
        """A server-side cursor over ``query``'s rows, inside a transaction: ``async for
        record in conn.cursor(q)`` reads them ``prefetch`` (50) at a time; ``cur = await
        conn.cursor(q)`` gives a Cursor with ``fetch(n)``, ``fetchrow()``, ``forward(n)``.
        Outside a transaction it raises NoActiveSqlTransaction."""
        check_record_class(record_class)
        return CursorFactory(self, query, args, prefetch, timeout)

    async def fetchmany(
        self,
        query: str,
        args: Iterable[Sequence[Any]],
        *,
        timeout: float | None = None,
        record_class: type[Any] | None = None,
    ) -> list[_core.Record]:
        """``executemany`` that returns the rows: ``query`` once per argument set, in one
        round trip and one implicit transaction (atomic); the rows of every execution,
        in order (``INSERT ... RETURNING id`` for a batch)."""
        check_record_class(record_class)
        rows: list[_core.Record] = await self._fetchmany(query, args, timeout=timeout)
        return rows

    def reload_schema_state(self) -> None:
        """Forget what this connection knows of the schema (its prepared statements and
        the type descriptions ``prepare()`` looked up), after DDL: asyncpg's name."""
        self.clear_statement_cache()
        self._types.clear()

    # -- query loggers ------------------------------------------------------------
    #
    # While a logger is registered, the statement methods are wrapped per instance (an
    # attribute shadows the core's method): a connection without loggers pays nothing.
    # Loggers are their borrower's: a pool's release (a new lease) forgets them.

    def add_query_logger(self, callback: Callable[[LoggedQuery], Any]) -> None:
        """Call ``callback(LoggedQuery)`` (a function or coroutine function) after each
        statement this connection runs, with its text, arguments, timeout, elapsed
        seconds and exception (None when it succeeded)."""
        if not callable(callback):
            raise TypeError("the query logger must be callable")
        self._own_loggers().append(callback)
        for method in _LOGGED_METHODS:
            if method not in self.__dict__:
                setattr(self, method, self._logged(method))

    def remove_query_logger(self, callback: Callable[[LoggedQuery], Any]) -> None:
        loggers = self._own_loggers()
        if callback in loggers:
            loggers.remove(callback)
        if not loggers:
            for method in _LOGGED_METHODS:
                self.__dict__.pop(method, None)

    @contextlib.contextmanager
    def query_logger(self, callback: Callable[[LoggedQuery], Any]) -> Iterator[None]:
        """``with conn.query_logger(cb):``: ``add_query_logger(cb)`` for the block."""
        self.add_query_logger(callback)
        try:
            yield
        finally:
            self.remove_query_logger(callback)

    def _own_loggers(self) -> list[Callable[[LoggedQuery], Any]]:
        if self._loggers_lease != self._lease:  # released since: the last borrower's
            self._query_loggers = []
            self._loggers_lease = self._lease
            for method in _LOGGED_METHODS:
                self.__dict__.pop(method, None)
        return self._query_loggers

    def _logged(self, method: str) -> Callable[..., Any]:
        core = getattr(_core.Connection, method).__get__(self)
        args_as_one = method in _ARGS_AS_ONE

        def logged(query: Any, *args: Any, **kw: Any) -> Any:
            # The statement is queued now, as without a logger (callers rely on the
            # order of their calls: copy_records_to_table queues its probe, then its
            # COPY); the logger hears of it when its future is done.
            started = time.monotonic()
            fut = core(query, *args, **kw)
            logged_args = args[0] if args_as_one and args else args
            timeout = kw.get("timeout")

            def done(f: asyncio.Future[Any]) -> None:
                error = asyncio.CancelledError() if f.cancelled() else f.exception()
                self._log_query(query, logged_args, timeout, time.monotonic() - started, error)

            fut.add_done_callback(done)
            return fut

        return logged

    def _log_query(
        self,
        query: Any,
        args: Any,
        timeout: float | None,
        elapsed: float,
        error: BaseException | None,
    ) -> None:
        loggers = self._own_loggers()
        if not loggers:
            return
        record = LoggedQuery(query, args, timeout, elapsed, error, self._addr, self._params)
        for callback in list(loggers):
            self._call_back(callback, record)

    def _call_back(self, callback: Callable[..., Any], arg: Any) -> None:
        """Run a user's callback soon on the loop (a coroutine function as a task), so
        that it never runs inside the core's callbacks nor delays the caller."""
        loop = asyncio.get_running_loop()
        if inspect.iscoroutinefunction(callback):
            task = loop.create_task(callback(arg))
            self._callback_tasks.add(task)
            task.add_done_callback(self._callback_tasks.discard)
        else:
            loop.call_soon(callback, arg)

    # -- termination listeners -----------------------------------------------------

    def add_termination_listener(self, callback: Callable[[Connection], Any]) -> None:
        """Call ``callback(conn)`` (a function or coroutine function) once when this
        connection closes: ``close()``, ``terminate()``, or lost (the server went away).
        A pooled connection forgets its listeners when released."""
        if not callable(callback):
            raise TypeError("the termination listener must be callable")
        self._termination_listeners().append(callback)

    def remove_termination_listener(self, callback: Callable[[Connection], Any]) -> None:
        listeners = self._termination_listeners()
        if callback in listeners:
            listeners.remove(callback)

    def _on_terminated(self, callbacks: tuple[Callable[[Connection], Any], ...]) -> None:
        # scheduled by the core (notify.c) when the connection closes
        for callback in callbacks:
            try:
                self._call_back(callback, self)
            except Exception:
                _logger.exception("a termination listener failed")

    async def add_listener(
        self, channel: str, callback: Callable[[Connection, int, str, str], Any]
    ) -> None:
        """LISTEN on ``channel``; each NOTIFY calls ``callback(conn, pid, channel, payload)``
        on the loop. A pooled connection forgets its listeners when released."""
        listeners = self._listeners()
        callbacks = listeners.get(channel)
        if callbacks is None:
            await self.execute(f"LISTEN {quote_ident(channel)}")
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
                await self.execute(f"UNLISTEN {quote_ident(channel)}")

    def add_log_listener(self, callback: Callable[[Connection, _core.Error], Any]) -> None:
        """Call ``callback(conn, message)`` for each NOTICE/WARNING the server sends;
        ``message`` is an exception instance with ``.severity``, ``.sqlstate``, ..."""
        self._notice_handlers().append(callback)

    def remove_log_listener(self, callback: Callable[[Connection, _core.Error], Any]) -> None:
        handlers = self._notice_handlers()
        if callback in handlers:
            handlers.remove(callback)

    async def copy_records_to_table(
        self,
        table_name: str,
        *,
        records: Iterable[Sequence[Any]],
        columns: Sequence[str] | None = None,
        schema_name: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """COPY ``records`` (tuples) into a table in one stream; returns the command tag
        (``"COPY 10000"``). Values travel as COPY data, never spliced into SQL.

        The values are sent in PostgreSQL's binary format, encoded for the column types as
        query arguments are (a value of the wrong type raises DataError naming its record
        and column), unless a column's type has no binary encoder (an enum, inet, ...):
        then the whole COPY is in text format, each value as its text."""
        # The column types first; the COPY keeps its place in the connection's order
        # meanwhile: statements issued after this call still run after the COPY.
        probe = self._query(
            _copy.columns_sql(self._server_version_num()),
            (qualified(table_name, schema_name),),
            timeout=timeout,
        )
        copy = self._copy_hold(timeout=timeout)
        try:
            table_columns = (await probe)[0]
            sql, payload = _copy.copy_records(
                table_columns, table_name, columns, schema_name, records
            )
        except BaseException:
            self._copy_send(copy, None, None)  # dropped unsent
            if copy.done() and not copy.cancelled():
                copy.exception()  # the connection failed it too: already said
            raise
        self._copy_send(copy, sql, payload)
        result: str = await copy
        return result

    async def copy_to_table(
        self,
        table_name: str,
        *,
        source: bytes,
        columns: Sequence[str] | None = None,
        schema_name: str | None = None,
        format: str = "text",
        timeout: float | None = None,
    ) -> str:
        """COPY ``source`` (data already in COPY ``format``: text or csv) into a table."""
        opts = _copy.format_option(format)
        sql = _copy.copy_in_sql(table_name, columns, schema_name) + opts
        result: str = await self._copy(sql, bytes(source), timeout=timeout)
        return result

    async def copy_from_query(
        self, query: str, *, format: str = "text", timeout: float | None = None
    ) -> bytes:
        """The result of ``query`` as COPY data (``format``: text or csv)."""
        opts = _copy.format_option(format)
        data: bytes = await self._copy(f"COPY ({query}) TO STDOUT{opts}", None, timeout=timeout)
        return data

    async def copy_from_table(
        self,
        table_name: str,
        *,
        columns: Sequence[str] | None = None,
        schema_name: str | None = None,
        format: str = "text",
        timeout: float | None = None,
    ) -> bytes:
        """A table's rows as COPY data (``format``: text or csv)."""
        opts = _copy.format_option(format)
        sql = _copy.copy_out_sql(table_name, columns, schema_name) + opts
        data: bytes = await self._copy(sql, None, timeout=timeout)
        return data

    async def reset(self, *, timeout: float | None = None) -> None:
        """Put the session back as it was right after connect: roll back an open
        transaction, then close cursors, unlisten, release advisory locks, reset every
        setting (RESET ALL, RESET ROLE, RESET SESSION AUTHORIZATION), drop temporary
        tables and forget sequence values; this connection's prepared statement cache
        stays. A pool does this by itself when a connection comes back (see
        ``create_pool(reset=...)``); call it from a custom ``reset`` to keep it."""
        if self.is_in_transaction():
            await self.execute("ROLLBACK", timeout=timeout)
        await self._reset_session(timeout=timeout)

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
    decode_json: bool = True,
    connection_class: type[Connection] = Connection,
    **params: Any,
) -> Connection:
    """Open a connection.

    ``dsn`` is a URL (``postgresql://``, ``postgres://``, ``postgresql+asyncpg://``, ...) or a
    libpq keyword/value string; keyword arguments (``host``, ``port``, ``user``, ``password``,
    ``database``, ``ssl``, ``server_settings`` or any libpq keyword) override it. ``ssl``
    is asyncpg's: ``True`` (a default ``ssl.SSLContext``: the system's CAs, the host name
    verified), ``False``, an sslmode (``"require"``, ``"verify-full"``...) or an
    ``ssl.SSLContext``, read as ``agentdb/sslcontext.py`` says.
    ``timeout`` bounds the whole connect, name resolution included; ``command_timeout`` is
    the default for every statement; ``statement_cache_size=0`` uses no named prepared
    statements (for PgBouncer in transaction mode). ``decode_json=False`` returns json and
    jsonb values (and arrays of them) as their JSON text, a ``str``, as asyncpg does, for
    code that parses them itself; by default they come back parsed.

    ``client_encoding`` is always ``UTF8`` (the server converts to and from the database's
    encoding); a ``client_encoding``, ``server_settings`` entry or ``options`` switch asking
    for another encoding raises InterfaceError.
    """
    for name, why in _NOT_TAKEN.items():
        if params.get(name) is not None and not (
            name == "record_class" and params[name] is _core.Record
        ):
            raise TypeError(f"connect() does not take asyncpg's {name}=: {why}")
        params.pop(name, None)
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be a positive number or None")
    if statement_cache_size < 0:
        raise ValueError("statement_cache_size must be >= 0")
    rootcert = None
    if params.get("ssl") is not None:  # asyncpg's ssl=: a bool, an sslmode, an SSLContext
        ssl_options, rootcert = ssl_keywords(params.pop("ssl"), params)
        params.update(ssl_options)
    try:
        return await _connect(
            dsn, timeout, command_timeout, statement_cache_size, decode_json,
            connection_class, params,
        )
    finally:
        if rootcert is not None:
            os.unlink(rootcert)  # libpq has read it (or never will)


async def _connect(
    dsn: str | None,
    timeout: float | None,
    command_timeout: float | None,
    statement_cache_size: int,
    decode_json: bool,
    connection_class: type[Connection],
    params: dict[str, Any],
) -> Connection:
    options = _dsn.parse(dsn, params)
    if timeout is None and options.get("connect_timeout", "0").strip("0 ") != "":
        timeout = float(options["connect_timeout"])
    secret = options.get("password")  # a service file's too: parse() read the file
    target = (
        _dsn.scrub(describe_target(options), secret)
        if _logger.isEnabledFor(logging.INFO)
        else ""
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    resolved = _dsn.resolve_without_lookup(options)  # IP addresses, sockets: no await
    if resolved is None:
        try:
            resolved = await _aio.wait_for(_dsn.resolve_hosts(options), timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out resolving the host name ({timeout} s)") from None
    options = resolved
    conn = connection_class()
    conn._configure(
        statement_cache_size, command_timeout or 0.0, DEFAULT_CANCEL_GRACE, not decode_json
    )
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    try:
        await conn._connect(list(options), list(options.values()), remaining, secret)
    except BaseException as e:
        conn.terminate()
        if target and isinstance(e, Exception):
            _logger.info("connect to %s failed: %s: %s", target, type(e).__name__, e)
        raise
    conn._addr = (options.get("host", ""), options.get("port", ""))
    conn._params = {k: v for k, v in options.items() if k not in _dsn.SECRET_KEYWORDS}
    if target:
        _logger.info(
            "connected to %s (backend pid %s, tls %s)",
            target,
            conn.get_backend_pid(),
            "on" if conn.ssl_in_use() else "off",
        )
    return conn
