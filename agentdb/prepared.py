"""Driver layer: ``conn.prepare()``'s PreparedStatement and the type information it reports.

A prepared statement is a statement of its connection's statement cache (``src/prepared.c``
describes it without running it): its executions reuse the server's plan like any
statement the cache holds. It belongs to the connection it was prepared on, and to the
borrower of that connection: once a pooled connection is released, its statements raise
InterfaceError (as asyncpg's do).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import _core
from .types import Attribute, Type

if TYPE_CHECKING:
    from .connection import Connection
    from .cursor import CursorFactory

_TYPES_SQL = """\
SELECT t.oid::int8, t.typname::text, n.nspname::text, t.typtype::text, t.typcategory::text,
       t.typelem::int8
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = ANY($1::oid[])"""

_KINDS = {"c": "composite", "r": "range", "m": "multirange"}


def check_record_class(record_class: object) -> None:
    """``record_class=``: asyncpg's rows may be of a Record subclass; agentdb's rows are
    always ``agentdb.Record`` (a final C type), so only None or Record itself is taken."""
    if record_class is not None and record_class is not _core.Record:
        raise _core.InterfaceError(
            f"record_class={record_class!r} is not supported: agentdb returns agentdb.Record "
            "rows (a final type); pass None, or convert the rows yourself"
        )


async def lookup_types(conn: Connection, oids: Iterable[int], timeout: float | None) -> None:
    """Fill the connection's cache of type descriptions (``conn._types``) for ``oids``."""
    known: dict[int, Type] = conn._types
    missing = sorted({oid for oid in oids if oid not in known})
    if not missing:
        return
    rows = await conn.fetch(_TYPES_SQL, missing, timeout=timeout)
    for oid, name, schema, typtype, category, elem in rows:
        if category == "A" and elem:
            kind = "array"
        else:
            kind = _KINDS.get(typtype, "scalar")
        known[oid] = Type(oid, name, kind, schema)
    for oid in missing:  # a type dropped since the statement was described
        known.setdefault(oid, Type(oid, "", "scalar", ""))


class PreparedStatement:
    """A statement prepared with ``conn.prepare(query)``, as asyncpg's PreparedStatement."""

    __slots__ = ("_conn", "_query", "_name", "_lease", "_params", "_attrs", "_status")

    def __init__(
        self,
        conn: Connection,
        query: str,
        name: str | None,
        params: tuple[Type, ...],
        attrs: tuple[Attribute, ...],
    ) -> None:
        self._conn = conn
        self._query = query
        self._name = name or ""
        self._lease = conn._lease
        self._params = params
        self._attrs = attrs
        self._status: str | None = None

    def _check(self, method: str) -> Connection:
        conn = self._conn
        if conn._lease != self._lease:
            raise _core.InterfaceError(
                f"cannot call PreparedStatement.{method}(): the underlying connection has "
                "been released back to the pool (a prepared statement belongs to the "
                "borrower that prepared it; prepare it again on the connection you hold)"
            )
        if conn.is_closed():
            raise _core.InterfaceError(
                f"cannot call PreparedStatement.{method}(): the connection is closed"
            )
        return conn

    def get_name(self) -> str:
        """The ``name=`` given to ``prepare()`` ("" without one). The server-side statement
        is the connection cache's, under a name agentdb chooses."""
        return self._name

    def get_query(self) -> str:
        return self._query

    def get_statusmsg(self) -> str | None:
        """The command tag of the last execution (``"SELECT 3"``), None before the first."""
        return self._status

    def get_parameters(self) -> tuple[Type, ...]:
        """The types the server inferred for ``$1``, ``$2``..."""
        return self._params

    def get_attributes(self) -> tuple[Attribute, ...]:
        """The result's columns: each an Attribute(name, Type(oid, name, kind, schema))."""
        return self._attrs

    async def _run(
        self, method: str, args: tuple[Any, ...], timeout: float | None
    ) -> list[_core.Record]:
        conn = self._check(method)
        rows, _names, _types, status = await conn._query(self._query, args, timeout=timeout)
        self._status = status
        return rows

    async def fetch(self, *args: Any, timeout: float | None = None) -> list[_core.Record]:
        return await self._run("fetch", args, timeout)

    async def fetchrow(self, *args: Any, timeout: float | None = None) -> _core.Record | None:
        rows = await self._run("fetchrow", args, timeout)
        return rows[0] if rows else None

    async def fetchval(self, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        rows = await self._run("fetchval", args, timeout)
        if not rows:
            return None
        if not 0 <= column < len(rows[0]):
            raise _core.InterfaceError(
                f"column {column} does not exist (the result has {len(rows[0])})"
            )
        return rows[0][column]

    async def fetchmany(
        self, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> list[_core.Record]:
        """The statement once per argument set, in one round trip and one implicit
        transaction; the rows of every execution, in order."""
        conn = self._check("fetchmany")
        rows: list[_core.Record] = await conn._fetchmany(self._query, args, timeout=timeout)
        return rows

    async def executemany(
        self, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        conn = self._check("executemany")
        await conn.executemany(self._query, args, timeout=timeout)

    def cursor(
        self, *args: Any, prefetch: int | None = None, timeout: float | None = None
    ) -> CursorFactory:
        """A server-side cursor over this statement's rows (see ``Connection.cursor``)."""
        from .cursor import CursorFactory

        return CursorFactory(self._check("cursor"), self._query, args, prefetch, timeout)

    async def explain(self, *args: Any, analyze: bool = False) -> Any:
        """The plan as PostgreSQL's JSON (``EXPLAIN (FORMAT JSON, VERBOSE)``), parsed.
        With ``analyze=True`` the statement runs (EXPLAIN ANALYZE) inside a transaction
        that is rolled back, so it changes nothing."""
        conn = self._check("explain")
        sql = f"EXPLAIN (FORMAT JSON, VERBOSE{', ANALYZE' if analyze else ''}) {self._query}"
        if analyze:
            tr = conn.transaction()  # a savepoint inside the caller's transaction
            await tr.start()
            try:
                plan = await conn.fetchval(sql, *args)
            finally:
                await tr.rollback()
        else:
            plan = await conn.fetchval(sql, *args)
        return json.loads(plan) if isinstance(plan, str) else plan

    def __repr__(self) -> str:
        return f"<agentdb.PreparedStatement {self._query!r}>"

