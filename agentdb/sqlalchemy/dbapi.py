"""Dialect layer: a PEP 249 face for agentdb's native connection, run from SQLAlchemy's greenlet.

Each ``cursor.execute`` is one ``await_`` of one native call (``Connection._query``): the rows
come back with the statement, so fetching needs no further switch. A transaction begins
lazily with the first statement (``BEGIN`` is pipelined with it: one round trip), unless the
connection is in AUTOCOMMIT.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy.connectors.asyncio import (
    AsyncAdapt_dbapi_connection,
    AsyncAdapt_dbapi_cursor,
    AsyncAdapt_dbapi_module,
    AsyncAdapt_dbapi_ss_cursor,
)
from sqlalchemy.util.concurrency import await_only, in_greenlet

import agentdb
from agentdb import errors as _errors
from agentdb._sql import begin_sql

if TYPE_CHECKING:
    from agentdb.connection import Connection
    from agentdb.pool import Pool

_SS_BATCH = 100
_cursor_names = itertools.count(1)
_NO_ROWS: list[Any] = []  # never handed out: fetchall() copies it (a new list each time)

# Bumped after every DDL statement a connection of this process runs (the core reports it:
# CREATE/ALTER/DROP, text() DDL included; not CREATE TEMP). Each native connection
# remembers the generation its statement cache was last emptied at; one that is behind
# empties its cache before its next statement, so no plan prepared before the DDL is used afterwards
# ("cached plan must not change result type" cannot be retried inside a transaction).
ddl_generation = [0]


def _is_stale_statement(error: BaseException) -> bool:
    code = getattr(error, "sqlstate", None)
    if code == "26000":
        return True
    return code == "0A000" and "cached plan must not change result type" in str(error)


def _description(
    names: tuple[str, ...] | None, oids: tuple[int, ...] | None
) -> list[tuple[Any, ...]] | None:
    if not names:
        return None
    assert oids is not None
    return [(n, o, None, None, None, None, None) for n, o in zip(names, oids, strict=True)]


class AgentdbCursor(AsyncAdapt_dbapi_cursor):
    """A client-side cursor: every row arrives with the statement, in the list the core
    built (``fetchall()`` hands that very list over; the others read it by position)."""

    __slots__ = ("_description", "_rowcount", "_arraysize", "_pos")

    _adapt_connection: AgentdbAdaptConnection
    _awaitable_cursor_close = False
    _rows: Any  # a list here (SQLAlchemy's base keeps a deque)

    def __init__(self, adapt_connection: AgentdbAdaptConnection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection  # type: ignore[assignment]
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = _NO_ROWS
        self._pos = 0
        self._description: Any = None
        self._rowcount = -1
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    @property
    def lastrowid(self) -> int:
        return 0

    async def _async_soft_close(self) -> None:
        return None

    def close(self) -> None:
        self._rows = _NO_ROWS
        self._pos = 0

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        rows, self._description, self._rowcount, ddl = self._adapt_connection._execute(
            operation, parameters
        )
        if ddl:
            ddl_generation[0] += 1
        self._rows = rows
        self._pos = 0

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._description = None
        self.close()
        try:
            await_only(self._adapt_connection._run_many(operation, seq_of_parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._rowcount = -1

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None

    def nextset(self) -> None:
        return None

    def fetchone(self) -> Any:
        pos = self._pos
        rows = self._rows
        if pos < len(rows):
            self._pos = pos + 1
            return rows[pos]
        return None

    def fetchmany(self, size: int | None = None) -> Any:
        if size is None:
            size = self._arraysize
        pos = self._pos
        out = self._rows[pos : pos + size]
        self._pos = pos + len(out)
        return out

    def fetchall(self) -> Any:
        rows, pos = self._rows, self._pos
        self._rows = _NO_ROWS
        self._pos = 0
        if pos == 0 and rows is not _NO_ROWS:
            return rows
        return rows[pos:]

    def __iter__(self) -> Any:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row


class AgentdbSSCursor(AsyncAdapt_dbapi_ss_cursor, AgentdbCursor):
    """A server-side cursor (``stream()``): ``DECLARE`` then ``FETCH`` in batches.

    Inside a transaction; in AUTOCOMMIT the cursor is declared ``WITH HOLD``.
    """

    __slots__ = ("_name", "_exhausted", "_buffer", "_hold")

    def __init__(self, adapt_connection: AgentdbAdaptConnection) -> None:
        AgentdbCursor.__init__(self, adapt_connection)
        self._name: str | None = None
        self._exhausted = False
        self._hold = False
        self._buffer: collections.deque[Any] = collections.deque()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        adapt = self._adapt_connection
        name = f"agentdb_ss_{next(_cursor_names)}"
        self._hold = adapt.autocommit
        hold = " WITH HOLD" if self._hold else ""
        declare = f"DECLARE {name} NO SCROLL CURSOR{hold} FOR {operation}"
        try:
            rows, names, oids, _tag = await_only(
                adapt._declare(declare, parameters, f"FETCH FORWARD {_SS_BATCH} FROM {name}")
            )
        except Exception as error:
            adapt._handle_exception(error)
        self._name = name
        self._description = _description(names, oids)
        self._buffer = collections.deque(rows)
        self._exhausted = len(rows) < _SS_BATCH
        self._rowcount = -1

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        raise NotImplementedError("a server-side cursor does not support executemany")

    def _fetch(self, n: int) -> None:
        if self._exhausted or self._name is None:
            return
        try:
            rows, _n, _o, _t = await_only(
                self._adapt_connection._conn()._query(
                    f"FETCH FORWARD {n} FROM {self._name}", ()
                )
            )
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._buffer.extend(rows)
        if len(rows) < n:
            self._exhausted = True

    def fetchone(self) -> Any:  # type: ignore[override]
        if not self._buffer:
            self._fetch(_SS_BATCH)
        return self._buffer.popleft() if self._buffer else None

    def fetchmany(self, size: int | None = None) -> Any:
        if size is None:
            size = self._arraysize
        if len(self._buffer) < size:
            self._fetch(max(size - len(self._buffer), _SS_BATCH))
        buf = self._buffer
        return [buf.popleft() for _ in range(min(size, len(buf)))]

    def fetchall(self) -> Any:
        while not self._exhausted:
            self._fetch(1000)
        out = list(self._buffer)
        self._buffer.clear()
        return out

    __iter__ = AgentdbCursor.__iter__  # (fetchone() above: its buffer)

    def close(self) -> None:  # type: ignore[override]
        name, self._name = self._name, None
        self._buffer.clear()
        if name is None:
            return
        conn = self._adapt_connection._connection
        if conn.is_closed() or not in_greenlet():
            return
        adapt = self._adapt_connection
        if adapt._in_transaction() or (
            self._hold and conn.get_transaction_status() in ("idle", "active")
        ):
            try:
                await_only(conn._query(f"CLOSE {name}", ()))
            except Exception:  # the cursor may be gone already
                pass


class AgentdbAdaptConnection(AsyncAdapt_dbapi_connection):
    """A native connection (pooled or not) as a PEP 249 connection."""

    _cursor_cls = AgentdbCursor  # type: ignore[assignment]
    _ss_cursor_cls = AgentdbSSCursor  # type: ignore[assignment]

    __slots__ = (
        "_pool",
        "isolation_level",
        "_isolation_setting",
        "readonly",
        "deferrable",
    )

    _connection: Connection  # type: ignore[assignment]

    def __init__(
        self,
        dbapi: Any,
        connection: Connection,
        pool: Pool | None = None,
    ) -> None:
        self.dbapi = dbapi
        self._connection = connection
        self._pool = pool
        self.isolation_level: str | None = None
        self._isolation_setting: str | None = None
        self.readonly = False
        self.deferrable = False

    # -- statements -------------------------------------------------------

    def _conn(self) -> Connection:
        return self._connection

    def _sync_cache(self) -> None:
        """Empty the statement cache when DDL ran since it was last emptied (the core
        queues one ``DEALLOCATE ALL`` ahead of anything sent later)."""
        conn = self._connection
        gen = ddl_generation[0]
        if getattr(conn, "_agentdb_ddl_seen", 0) == gen:
            return
        if conn.get_transaction_status() == "inerror":
            return  # nothing but a rollback runs now; the next statement checks again
        conn.clear_statement_cache()
        conn._agentdb_ddl_seen = gen  # type: ignore[attr-defined]

    def _in_transaction(self) -> bool:
        """Whether a transaction is open once the statements issued so far have run."""
        return self._connection.is_in_transaction()

    def _begin_sql(self) -> str | None:
        if self.isolation_level == "autocommit":
            return None
        if self._connection.is_in_transaction():
            return None
        return begin_sql(self.isolation_level, self.readonly, self.deferrable)

    def _execute(self, operation: str, parameters: Sequence[Any] | None) -> Any:
        """One statement, ``BEGIN`` ahead of it when a transaction is due (one message,
        one future): ``(rows, description, rowcount, ddl)`` from the core."""
        conn = self._connection
        args = tuple(parameters) if parameters else ()
        if conn.__dict__.get("_agentdb_ddl_seen", 0) != ddl_generation[0]:
            self._sync_cache()
        begin = self._begin_sql()
        try:
            return await_only(conn._dbapi_execute(operation, args, begin))
        except Exception as error:
            if begin is None or not _is_stale_statement(error):
                self._handle_exception(error)
            # The statement's cached plan went stale (DDL changed a table) as the first
            # statement of the transaction its BEGIN opened: nothing else ran in it, so
            # roll back and run it again (the core forgot its cached plans).
            try:
                await_only(conn._query("ROLLBACK", ()))
                return await_only(conn._dbapi_execute(operation, args, begin))
            except Exception as retry_error:
                self._handle_exception(retry_error)

    async def _declare(
        self, declare: str, parameters: Sequence[Any] | None, fetch: str
    ) -> tuple[list[Any], Any, Any, str]:
        """A server-side cursor's DECLARE and first FETCH (BEGIN when due), pipelined."""
        conn = self._connection
        args = tuple(parameters) if parameters else ()
        if conn.__dict__.get("_agentdb_ddl_seen", 0) != ddl_generation[0]:
            self._sync_cache()
        begin = self._begin_sql()
        futs = [] if begin is None else [conn._query(begin, ())]
        futs.append(conn._query(declare, args))
        futs.append(conn._query(fetch, ()))
        results = await asyncio.gather(*futs, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results[-1]  # type: ignore[return-value]

    async def _run_many(self, operation: str, seq_of_parameters: Any) -> None:
        conn = self._connection
        if getattr(conn, "_agentdb_ddl_seen", 0) != ddl_generation[0]:
            self._sync_cache()
        begin = self._begin_sql()
        if begin is not None:
            await conn._query(begin, ())
        await conn.executemany(operation, [tuple(p) for p in seq_of_parameters])

    # -- errors -----------------------------------------------------------

    @classmethod
    def _handle_exception_no_connection(cls, dbapi: Any, error: Exception) -> NoReturn:
        if isinstance(error, (OSError, TimeoutError)) and not isinstance(error, _errors.Error):
            raise _errors.OperationalError(str(error) or type(error).__name__) from error
        raise error

    def _handle_exception(self, error: Exception) -> NoReturn:
        self._handle_exception_no_connection(self.dbapi, error)

    # -- transactions -----------------------------------------------------

    @property
    def autocommit(self) -> bool:
        return self.isolation_level == "autocommit"

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if value:
            self.isolation_level = "autocommit"
        else:
            self.isolation_level = self._isolation_setting

    def set_isolation_level(self, level: str | None) -> None:
        self.rollback()
        self.isolation_level = self._isolation_setting = level

    def _end(self, sql: str) -> None:
        conn = self._connection
        if conn.is_closed() or not conn.is_in_transaction():
            return
        try:
            await_only(conn._query(sql, ()))
        except Exception as error:
            self._handle_exception(error)

    def rollback(self) -> None:
        self._end("ROLLBACK")

    def commit(self) -> None:
        self._end("COMMIT")

    def ping(self) -> None:
        try:
            await_only(self._connection._query("SELECT 1", ()))
        except Exception as error:
            self._handle_exception(error)

    # -- the pool's use of it ------------------------------------------------

    def _check_in(self) -> None:
        """Back to the native pool, which never blocks and rolls back a transaction
        still open (whatever ``reset_on_return`` did or did not do)."""
        conn = self._connection
        try:
            self._pool.release(conn)  # type: ignore[union-attr]
        except Exception:
            conn.terminate()

    # -- closing ----------------------------------------------------------

    def close(self) -> None:
        """Close the physical connection (a pooled one frees its slot in the native pool).

        SQLAlchemy closes a DBAPI connection only when it is done with it (invalidated,
        recycled, detached, its pool disposed); checking in is ``_check_in``."""
        conn = self._connection
        if self._pool is not None or not in_greenlet():
            self.terminate()
            return
        try:
            await_only(conn.close())
        except Exception:
            conn.terminate()

    def terminate(self) -> None:
        """Close the socket now (no round trip) and free the pool slot; synchronous."""
        conn = self._connection
        conn.terminate()
        if self._pool is not None:
            try:
                self._pool.release(conn)  # a closed connection: only its slot, if any
            except Exception:
                pass


class AgentdbDBAPI(AsyncAdapt_dbapi_module):
    """The DBAPI module SQLAlchemy sees: PEP 249 names over agentdb."""

    paramstyle = "numeric_dollar"
    apilevel = "2.0"
    threadsafety = 1

    Error = _errors.Error  # type: ignore[assignment]
    Warning = _errors.Warning
    InterfaceError = _errors.InterfaceError  # type: ignore[assignment]
    DatabaseError = _errors.DatabaseError
    DataError = _errors.DataError
    OperationalError = _errors.OperationalError  # type: ignore[assignment]
    IntegrityError = _errors.IntegrityError  # type: ignore[assignment]
    InternalError = _errors.InternalError
    ProgrammingError = _errors.ProgrammingError
    NotSupportedError = _errors.NotSupportedError

    STRING = "STRING"
    NUMBER = "NUMBER"
    DATETIME = "DATETIME"
    BINARY = "BINARY"
    ROWID = "ROWID"

    def __init__(self) -> None:
        if AsyncAdapt_dbapi_module.__init__ is not object.__init__:  # type: ignore[comparison-overlap]  # SQLAlchemy 2.1 (2.0 has none)
            super().__init__(agentdb)  # type: ignore[arg-type]
        self.agentdb = agentdb

    @staticmethod
    def Binary(value: Any) -> bytes:  # noqa: N802 - PEP 249 name
        return bytes(value)

    def connect(self, *args: Any, **kw: Any) -> AgentdbAdaptConnection:
        """A connection of its own (no pool): ``agentdb.connect(**kw)``, or
        ``async_creator_fn(*args, **kw)`` when given: ``create_async_engine(...,
        async_creator=f)`` connects through ``dbapi.connect(async_creator_fn=f)``, and
        ``f`` returns an agentdb ``Connection``."""
        creator = kw.pop("async_creator_fn", None)
        try:
            if creator is not None:
                conn = await_only(creator(*args, **kw))
                if not isinstance(conn, agentdb.Connection):
                    raise TypeError(
                        f"async_creator must return an agentdb.Connection, "
                        f"not {type(conn).__name__}"
                    )
            else:
                conn = await_only(agentdb.connect(*args, **kw))
        except Exception as error:
            AgentdbAdaptConnection._handle_exception_no_connection(self, error)
        return AgentdbAdaptConnection(self, conn)

    def adapt_pooled(self, conn: Connection, pool: Pool) -> AgentdbAdaptConnection:
        return AgentdbAdaptConnection(self, conn, pool)
