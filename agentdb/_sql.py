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


def quote_literal(value: str) -> str:
    """``value`` as an SQL string literal (E'' when it has a backslash)."""
    if "\0" in value:
        raise ValueError("a COPY option cannot contain NUL")
    quoted = "'" + value.replace("'", "''") + "'"
    return "E" + quoted.replace("\\", "\\\\") if "\\" in value else quoted



def qualified(name: str, schema_name: str | None) -> str:
    """``"schema"."name"``, or ``"name"`` without a schema."""
    return f"{quote_ident(schema_name)}.{quote_ident(name)}" if schema_name else quote_ident(name)


#: pgvector's ``vector`` and ``halfvec`` type OIDs in the connection's database (0 for a type
#: that is not there): an extension's types get their OIDs when it is created, so they
#: differ from one database to the next. Read once per connection, at connect, by name on
#: the search path (``to_regtype`` reads the catalog caches only: a join over
#: ``pg_extension`` costs a fresh backend about 3 ms more).
VECTOR_TYPES_SQL = (
    "SELECT coalesce(to_regtype('vector')::oid, 0)::int8, "
    "coalesce(to_regtype('halfvec')::oid, 0)::int8"
)


#: A type by name and schema, for set_type_codec(): its OID and kind (``pg_type.typtype``).
TYPE_BY_NAME_SQL = (
    "SELECT t.oid::int8, t.typtype::text FROM pg_catalog.pg_type t "
    "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
    "WHERE t.typname = $1 AND n.nspname = $2"
)
