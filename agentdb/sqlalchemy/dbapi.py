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
import re
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

_ROWCOUNT_TAG = re.compile(r"^(?:SELECT|UPDATE|DELETE|MERGE|FETCH|MOVE|COPY|INSERT \d+) (\d+)$")
_SS_BATCH = 100
_cursor_names = itertools.count(1)

# Bumped after every DDL statement a connection of this process runs (by its command tag:
# CREATE/ALTER/DROP, text() DDL included; not CREATE TEMP). Each native connection
# remembers the generation its statement cache was last emptied at; one that is behind
# empties its cache before its next statement, so no plan prepared before the DDL is used afterwards
# ("cached plan must not change result type" cannot be retried inside a transaction).
ddl_generation = [0]
_DDL_TAG = re.compile(r"^(?:CREATE|ALTER|DROP)\b")
# A new temporary table changes no existing plan: services that make one per request must
# not empty every connection's cache each time.
_CREATE_TEMP = re.compile(r"^\s*CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s", re.I)


def _is_stale_statement(error: BaseException) -> bool:
    code = getattr(error, "sqlstate", None)
    if code == "26000":
        return True
    return code == "0A000" and "cached plan must not change result type" in str(error)


def _rowcount(tag: str) -> int:
    m = _ROWCOUNT_TAG.match(tag)
    return int(m.group(1)) if m else -1


def _description(
    names: tuple[str, ...] | None, oids: tuple[int, ...] | None
) -> list[tuple[Any, ...]] | None:
    if not names:
        return None
    assert oids is not None
    return [(n, o, None, None, None, None, None) for n, o in zip(names, oids, strict=True)]


class AgentdbCursor(AsyncAdapt_dbapi_cursor):
    """A client-side cursor: every row arrives with the statement."""

    __slots__ = ("_description", "_rowcount", "_arraysize")

    _adapt_connection: AgentdbAdaptConnection
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: AgentdbAdaptConnection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection  # type: ignore[assignment]
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: list[tuple[Any, ...]] | None = None
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
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            rows, names, oids, tag = await_only(
                self._adapt_connection._run(operation, parameters)
            )
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._description = _description(names, oids)
        self._rows = collections.deque(rows)
        self._rowcount = _rowcount(tag)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._description = None
        self._rows.clear()
        try:
            await_only(self._adapt_connection._run_many(operation, seq_of_parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._rowcount = -1

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None

    def nextset(self) -> None:
        return None


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
                adapt._run(declare, parameters, then=f"FETCH FORWARD {_SS_BATCH} FROM {name}")
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

    def fetchone(self) -> Any:
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

    def __iter__(self) -> Any:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row

    def close(self) -> None:
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
        "_released",
        "_began",
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
        self._began = False
        self.isolation_level: str | None = None
        self._isolation_setting: str | None = None
        self.readonly = False
        self.deferrable = False
        self._released = False

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

    @staticmethod
    def _saw_tag(tag: str, operation: str) -> None:
        if _DDL_TAG.match(tag) and not _CREATE_TEMP.match(operation):
            ddl_generation[0] += 1

    def _in_transaction(self) -> bool:
        """Whether a transaction is open on the connection.

        The core reports ``"active"`` while housekeeping of its own is in flight (the
        ``DEALLOCATE`` of a statement evicted from its cache is sent right after the
        statement whose preparation evicted it): then the server's answer is not known
        yet, and whether this adapter began a transaction decides.
        """
        status = self._connection.get_transaction_status()
        if status == "active":
            return self._began
        return status in ("intrans", "inerror")

    def _begin_sql(self) -> str | None:
        if self.isolation_level == "autocommit":
            return None
        if self._in_transaction():
            return None
        return begin_sql(self.isolation_level, self.readonly, self.deferrable)

    async def _run(
        self,
        operation: str,
        parameters: Sequence[Any] | None,
        then: str | None = None,
        _retry: bool = True,
    ) -> tuple[list[Any], Any, Any, str]:
        """BEGIN (when due), the statement and an optional follow-up, pipelined."""
        conn = self._connection
        args = tuple(parameters) if parameters else ()
        if getattr(conn, "_agentdb_ddl_seen", 0) != ddl_generation[0]:
            self._sync_cache()
        begin = self._begin_sql()
        futs = []
        if begin is not None:
            self._began = True
            futs.append(conn._query(begin, ()))
        futs.append(conn._query(operation, args))
        if then is not None:
            futs.append(conn._query(then, ()))
        if len(futs) == 1:
            result = await futs[0]
            self._saw_tag(result[3], operation)
            return result  # type: ignore[no-any-return]
        results = await asyncio.gather(*futs, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                if _retry and begin is not None and _is_stale_statement(r) and not isinstance(
                    results[0], BaseException
                ):
                    # The statement's cached plan went stale (DDL changed a table) as the
                    # first statement of a transaction we just began: nothing else ran in
                    # it, so roll back and run it again (the core forgot its cached plans).
                    await conn._query("ROLLBACK", ())
                    return await self._run(operation, parameters, then, _retry=False)
                raise r
        self._saw_tag(results[-2 if then is not None else -1][3], operation)  # type: ignore[index]
        return results[-1]  # type: ignore[no-any-return,return-value]

    async def _run_many(self, operation: str, seq_of_parameters: Any) -> None:
        conn = self._connection
        if getattr(conn, "_agentdb_ddl_seen", 0) != ddl_generation[0]:
            self._sync_cache()
        begin = self._begin_sql()
        if begin is not None:
            self._began = True
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
        if conn.is_closed() or not self._in_transaction():
            self._began = False
            return
        self._began = False
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

    # -- closing ----------------------------------------------------------

    def close(self) -> None:
        """Back to the native pool (which rolls back an open transaction), or closed."""
        if self._released:
            return
        self._released = True
        conn = self._connection
        if self._pool is not None:
            try:
                self._pool.release(conn)
            except Exception:
                conn.terminate()
        elif in_greenlet():
            try:
                await_only(conn.close())
            except Exception:
                conn.terminate()
        else:
            conn.terminate()

    def terminate(self) -> None:
        """Close the socket now (no round trip) and free the pool slot; synchronous."""
        conn = self._connection
        conn.terminate()
        if self._pool is not None and not self._released:
            self._released = True
            try:
                self._pool.release(conn)
            except Exception:
                pass
        self._released = True


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
