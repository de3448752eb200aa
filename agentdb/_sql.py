"""Driver layer: the SQL text agentdb writes itself (quoted identifiers, ``BEGIN``)."""

from __future__ import annotations

#: The isolation levels ``Connection.transaction(isolation=...)`` and the SQLAlchemy
#: dialect take (asyncpg's names), and how ``BEGIN`` spells them.
ISOLATION_LEVELS = {
    "read_committed": "READ COMMITTED",
    "read_uncommitted": "READ UNCOMMITTED",
    "repeatable_read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


def begin_sql(
    isolation: str | None = None, readonly: bool = False, deferrable: bool = False
) -> str:
    """``BEGIN`` with an isolation level (a key of ``ISOLATION_LEVELS``) and modes:
    ``BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE``."""
    sql = "BEGIN"
    if isolation is not None:
        sql += " ISOLATION LEVEL " + ISOLATION_LEVELS[isolation]
    if readonly:
        sql += " READ ONLY"
    if deferrable:
        sql += " DEFERRABLE"
    return sql


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified(name: str, schema_name: str | None) -> str:
    """``"schema"."name"``, or ``"name"`` without a schema."""
    return f"{quote_ident(schema_name)}.{quote_ident(name)}" if schema_name else quote_ident(name)
