"""Driver layer: ``agentdb.connect()`` and the Connection class users hold."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from . import _aio, _core
from . import copy_format as _copy
from . import copy_io as _copy_io
from . import dsn as _dsn
from ._sql import TYPE_BY_NAME_SQL, VECTOR_TYPES_SQL, qualified, quote_ident
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

    # oid -> the codec set_type_codec()/set_builtin_type_codec() gave it (the core has a copy)
    _codecs: dict[int, tuple[int, Any, Any, int]]

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
        records: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
        columns: Sequence[str] | None = None,
        schema_name: str | None = None,
        timeout: float | None = None,
        where: str | None = None,
    ) -> str:
        """COPY ``records`` (tuples; an iterable or an async iterable) into a table in one
        stream; returns the command tag (``"COPY 10000"``). Values travel as COPY data,
        never spliced into SQL; ``where`` is an SQL condition rows must meet to be kept.

        The values are sent in PostgreSQL's binary format, encoded for the column types as
        query arguments are (a value of the wrong type raises DataError naming its record
        and column), unless a column's type has no binary encoder (an enum, inet, ...):
        then the whole COPY is in text format, each value as its text. Records from an
        async iterable are encoded and sent 1,000 at a time, as they come."""
        streamed = _copy_io.iter_or_aiter(records)
        # The column types first; the COPY keeps its place in the connection's order
        # meanwhile: statements issued after this call still run after the COPY.
        probe = self._query(
            _copy.columns_sql(self._server_version_num()),
            (qualified(table_name, schema_name),),
            timeout=timeout,
        )
        copy = self._copy_hold(timeout=None if streamed else timeout)
        try:
            table_columns = (await probe)[0]
            if streamed:
                oids = _copy.column_oids(table_columns, columns)
                chunks = _copy_io.record_chunks(
                    records, oids, self._copy_binary  # type: ignore[arg-type]
                )
                sql = _copy.copy_in_sql(table_name, columns, schema_name)
                return await self._copy_in_stream(copy, sql, where, chunks, timeout)
            sql, payload = _copy.copy_records(
                table_columns,
                table_name,
                columns,
                schema_name,
                records,  # type: ignore[arg-type]
                self._copy_binary,
            )
        except BaseException:
            self._copy_send(copy, None, None)  # dropped unsent (nothing when streamed)
            if copy.done() and not copy.cancelled():
                copy.exception()  # the connection failed it too: already said
            raise
        self._copy_send(copy, sql + _copy.where_clause(where), payload)
        result: str = await copy
        return result

    async def copy_to_table(
        self,
        table_name: str,
        *,
        source: Any,
        columns: Sequence[str] | None = None,
        schema_name: str | None = None,
        timeout: float | None = None,
        where: str | None = None,
        **options: Any,
    ) -> str:
        """COPY ``source`` into a table; returns the command tag. ``source`` is bytes, a
        path, a file object (read in the executor, or awaited when its ``read`` is a
        coroutine function) or an async iterable of bytes, in COPY's format (``format=``
        text, csv or binary, and asyncpg's other options: ``delimiter``, ``null``,
        ``header``, ``quote``, ``escape``, ``force_not_null``, ``force_null``, ``freeze``,
        ``encoding``). Anything but bytes is streamed: read as the connection sends it."""
        sql = _copy.copy_in_sql(table_name, columns, schema_name) + _copy.copy_options(
            "copy_to_table", **options
        )
        if isinstance(source, (bytes, bytearray, memoryview)):
            result: str = await self._copy(
                sql + _copy.where_clause(where), bytes(source), timeout=timeout
            )
            return result
        chunks = _copy_io.source_chunks(source)
        copy = self._copy_hold()
        return await self._copy_in_stream(
            copy, sql, where, ((False, c) async for c in chunks), timeout
        )

    async def _copy_in_stream(
        self,
        copy: Any,
        sql: str,
        where: str | None,
        chunks: AsyncIterator[tuple[bool, bytes]],
        timeout: float | None,
    ) -> str:
        """Send the held COPY ``copy`` with ``chunks`` fed one at a time, each once the
        one before is in libpq's buffer. A source that fails, a timeout or a cancel ends
        the COPY with an error (the server rolls it back) and raises."""
        deadline = None if timeout is None else time.monotonic() + timeout
        started = False

        async def feed() -> None:
            nonlocal started
            async for binary, chunk in chunks:
                if not started:  # the format is known with the first chunk
                    opts = " (FORMAT binary)" if binary else ""
                    self._copy_send(copy, sql + opts + _copy.where_clause(where), b"", True)
                    started = True
                fed = self._copy_feed(copy, chunk)
                if fed is None:
                    return  # gone: `copy` holds what happened
                await asyncio.wait((fed, copy), return_when=asyncio.FIRST_COMPLETED)
                if copy.done():
                    return
            if not started:
                self._copy_send(copy, sql + _copy.where_clause(where), b"", True)
                started = True
            self._copy_feed(copy, None)

        try:
            await _aio.wait_for(feed(), timeout)
        except BaseException as e:
            if not started:
                self._copy_send(copy, None, None)
            else:
                self._copy_feed(copy, None, f"COPY aborted by the client: {type(e).__name__}")
                copy.add_done_callback(_consume_outcome)
            if isinstance(e, TimeoutError) and timeout is not None:
                raise TimeoutError(f"COPY timed out after {timeout} s") from None
            raise
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        result: str = await _aio.wait_for(copy, remaining)
        return result

    async def copy_from_query(
        self,
        query: str,
        *,
        output: Any = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        """The result of ``query`` as COPY data (``format=`` text, csv or binary, and
        asyncpg's other options). With ``output`` (a path, a file object, or a coroutine
        function called with each chunk) the data is written there as it arrives, files
        in the executor, and the command tag is returned (``"COPY 10"``); without it,
        the data itself (bytes)."""
        sql = f"COPY ({query}) TO STDOUT" + _copy.copy_options("copy_from_query", **options)
        return await self._copy_out(sql, output, timeout)

    async def copy_from_table(
        self,
        table_name: str,
        *,
        output: Any = None,
        columns: Sequence[str] | None = None,
        schema_name: str | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Any:
        """A table's rows as COPY data: as ``copy_from_query``."""
        sql = _copy.copy_out_sql(table_name, columns, schema_name) + _copy.copy_options(
            "copy_from_table", **options
        )
        return await self._copy_out(sql, output, timeout)

    async def _copy_out(self, sql: str, output: Any, timeout: float | None) -> Any:
        if output is None:
            return await self._copy(sql, None, timeout=timeout)
        write, close = _copy_io.output_writer(output)
        queue = _copy_io.ChunkQueue()
        copy = self._copy(sql, queue.put, timeout=timeout)
        try:
            await queue.drain(copy, write)
        except BaseException:
            copy.cancel()
            copy.add_done_callback(_consume_outcome)
            raise
        finally:
            await close()
        return await copy

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

    async def reload_schema_state(self, *, timeout: float | None = None) -> None:
        """Forget what this connection knows of the schema, after DDL (asyncpg's name):
        its prepared statements, the type descriptions ``prepare()`` looked up, and the
        extension types found at connect (pgvector's ``vector`` and ``halfvec``, looked up
        again: after ``CREATE EXTENSION vector`` on an open connection, its values decode
        as ``array('f')`` from then on)."""
        self.clear_statement_cache()
        self._types.clear()
        await self._load_vector_types(timeout=timeout)

    async def set_type_codec(
        self,
        typename: str,
        *,
        schema: str = "public",
        encoder: Callable[[Any], Any],
        decoder: Callable[[Any], Any],
        format: str = "text",
    ) -> None:
        """Encode and decode values of ``schema.typename`` with your functions, on this
        connection (asyncpg's API; in a pool, call it from ``init=``: a codec stays with
        its physical connection through releases and resets). ``format="text"``:
        ``encoder(value) -> str`` and ``decoder(str)``; ``"binary"``: bytes, in the
        type's binary send/receive format. Arrays of the type are not covered.
        ``"tuple"`` is asyncpg's own and not supported (NotSupportedError)."""
        if format not in ("text", "binary", "tuple"):
            raise ValueError("format must be 'text', 'binary' or 'tuple'")
        if format == "tuple":
            raise _core.NotSupportedError(
                "set_type_codec(format='tuple') is not supported: use 'text' or 'binary'"
            )
        if not callable(encoder) or not callable(decoder):
            raise TypeError("encoder and decoder must be callables")
        oid = await self._type_oid(typename, schema)
        self._put_type_codec(oid, (0 if format == "text" else 1, encoder, decoder, 0))

    async def set_builtin_type_codec(
        self,
        typename: str,
        *,
        schema: str = "public",
        codec_name: str,
        format: str | None = None,
    ) -> None:
        """Decode and encode ``schema.typename`` (an extension's type, a domain...) as the
        built-in type ``codec_name`` (``"text"``, ``"int4"``, ``"jsonb"``, any type of
        pg_catalog), in its text form, or also in its binary form with
        ``format="binary"`` (when the type's binary form is the built-in's: a domain's,
        an extension type that reuses a core type's send/receive). asyncpg's API; the
        default format is text for text types (text, varchar, name, json, xml...) and
        binary for the others."""
        if format not in (None, "text", "binary"):
            raise ValueError("format must be None, 'text' or 'binary'")
        base = await self._type_oid(codec_name, "pg_catalog", what="codec_name")
        oid = await self._type_oid(typename, schema)
        if format is None:
            format = "text" if codec_name in _TEXT_TYPES else "binary"
        self._put_type_codec(oid, (2, format == "binary", None, base))

    async def reset_type_codec(self, typename: str, *, schema: str = "public") -> None:
        """Forget a codec set with ``set_type_codec``/``set_builtin_type_codec``."""
        oid = await self._type_oid(typename, schema)
        codecs = dict(getattr(self, "_codecs", {}))
        codecs.pop(oid, None)
        self._codecs = codecs
        self._set_type_codecs(codecs or None)
        self.clear_statement_cache()

    async def _type_oid(self, typename: str, schema: str, what: str = "type") -> int:
        row = await self.fetchrow(TYPE_BY_NAME_SQL, typename, schema)
        if row is None:
            raise ValueError(f"unknown {what}: {schema}.{typename}")
        oid: int = row[0]
        return oid

    def _put_type_codec(self, oid: int, entry: tuple[int, Any, Any, int]) -> None:
        # A new dict each time: the core keeps the one it was given, unchanged.
        codecs = {**getattr(self, "_codecs", {}), oid: entry}
        self._codecs = codecs
        self._set_type_codecs(codecs)
        # Cached statements asked for results in the format of the codecs they were
        # prepared with: prepare them again.
        self.clear_statement_cache()

    async def _load_vector_types(self, *, timeout: float | None = None) -> None:
        # Unprepared: behind a transaction-mode pooler a named statement may be gone.
        row = await self._fetchrow_unprepared(VECTOR_TYPES_SQL, timeout=timeout)
        assert row is not None  # an aggregate without GROUP BY: always one row
        self._set_vector_types(row[0], row[1])

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> Transaction:
        """A transaction block: ``async with conn.transaction(): ...`` (nested: savepoints)."""
        return Transaction(self, isolation=isolation, readonly=readonly, deferrable=deferrable)



# set_builtin_type_codec(): the built-in types whose binary form another type is unlikely
# to share (a composite, an enum or a domain over another type shows its text as theirs).
_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name", "char", "json", "xml", "unknown"})


def _consume_outcome(fut: Any) -> None:
    """A COPY's outcome nobody awaits any more (its caller raised): taken, not logged."""
    if not fut.cancelled():
        fut.exception()


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
        # pgvector's types: their OIDs are this database's, and the decoders of every
        # statement depend on them. One round trip (its cost: docs/architecture.md).
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        await conn._load_vector_types(timeout=remaining)
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
