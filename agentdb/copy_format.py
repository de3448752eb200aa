"""Driver layer: COPY statements and payloads: rows into a table, tables and queries out.

Rows go in binary format when every column type has a binary encoder, else in text;
tables and query results come out in the format asked for (asyncpg's COPY options).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import _core
from ._sql import qualified, quote_ident, quote_literal


def records_payload(records: Iterable[Sequence[Any]]) -> bytes:
    """The COPY FROM STDIN payload (text format) for ``records``: each value as the text an
    untyped parameter is sent as, with COPY's escapes, ``\\N`` for None (built in C)."""
    return _core._copy_text(records)


def column_list(columns: Sequence[str] | None) -> str:
    """`` ("a", "b")`` for COPY, or nothing for every column."""
    return " (" + ", ".join(quote_ident(c) for c in columns) + ")" if columns else ""


# asyncpg's COPY options, by method; each is spelt as COPY spells it.
_OUT_OPTIONS = ("format", "oids", "delimiter", "null", "header", "quote", "escape",
                "force_quote", "encoding")
_IN_OPTIONS = ("format", "oids", "freeze", "delimiter", "null", "header", "quote", "escape",
               "force_not_null", "force_null", "encoding")
COPY_OPTIONS = {
    "copy_from_query": _OUT_OPTIONS,
    "copy_from_table": _OUT_OPTIONS,
    "copy_to_table": _IN_OPTIONS,
}


def copy_options(method: str, **options: Any) -> str:
    """`` (FORMAT 'csv', HEADER True)`` for the options given (None: left out), or
    nothing; TypeError for an option ``method`` does not take, ValueError for a format
    other than text, csv or binary."""
    allowed = COPY_OPTIONS[method]
    opts = []
    for name, value in options.items():
        if name not in allowed:
            raise TypeError(f"{method}() got an unexpected keyword argument {name!r}")
        if value is None:
            continue
        if name == "format" and value not in ("text", "csv", "binary"):
            raise ValueError("format must be 'text', 'csv' or 'binary'")
        if name in ("force_quote", "force_not_null", "force_null"):
            if value is True and name == "force_quote":
                text = "*"
            elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise TypeError(f"{name} must be a sequence of column names")
            else:
                text = "(" + ", ".join(quote_ident(c) for c in value) + ")"
        elif name in ("oids", "freeze", "header"):
            text = "true" if value else "false"
        else:
            text = quote_literal(str(value))
        opts.append(f"{name.upper()} {text}")
    return " (" + ", ".join(opts) + ")" if opts else ""


def where_clause(where: str | None) -> str:
    """`` WHERE <condition>`` for COPY FROM, or nothing."""
    return f" WHERE {where}" if where else ""


def copy_in_sql(table_name: str, columns: Sequence[str] | None, schema_name: str | None) -> str:
    return f"COPY {qualified(table_name, schema_name)}{column_list(columns)} FROM STDIN"


def copy_out_sql(table_name: str, columns: Sequence[str] | None, schema_name: str | None) -> str:
    return f"COPY {qualified(table_name, schema_name)}{column_list(columns)} TO STDOUT"


# The columns COPY FROM STDIN fills when it is given no column list (all but generated and
# dropped ones, in order) with their types: a domain as its base type, which is what its
# binary form is. One statement for every table: prepared once per connection.
_COLUMNS_SQL = (
    "SELECT a.attname, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, "
    "{generated} FROM pg_catalog.pg_attribute a "
    "JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
    "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attnum"
)
COLUMNS_SQL = _COLUMNS_SQL.format(generated="a.attgenerated <> ''")
COLUMNS_SQL_BEFORE_12 = _COLUMNS_SQL.format(generated="false")  # no generated columns yet


def columns_sql(server_version: int) -> str:
    return COLUMNS_SQL if server_version >= 120000 else COLUMNS_SQL_BEFORE_12


#: ``_copy_binary(records, oids) -> bytes | None`` (the core's, or a connection's).
BinaryEncoder = Callable[[Iterable[Sequence[Any]], tuple[int, ...]], "bytes | None"]


def column_oids(
    table_columns: Iterable[Any], columns: Sequence[str] | None
) -> tuple[int, ...] | None:
    """The type OIDs of the columns COPY fills, from the rows of COLUMNS_SQL; None when a
    column named is not in the table (the server says so, in text format)."""
    if columns is None:
        return tuple(oid for _, oid, gen in table_columns if not gen)
    by_name = {name: oid for name, oid, _ in table_columns}
    return tuple(by_name[c] for c in columns) if all(c in by_name for c in columns) else None


def copy_records(
    table_columns: Iterable[Any],
    table_name: str,
    columns: Sequence[str] | None,
    schema_name: str | None,
    records: Iterable[Sequence[Any]],
    encode_binary: BinaryEncoder = _core._copy_binary,
) -> tuple[str, bytes]:
    """The COPY statement and its payload for ``records``: binary when every column being
    filled has a binary encoder (``encode_binary``: a connection's ``_copy_binary``, with
    its types), else text. ``table_columns`` are the rows of COLUMNS_SQL:
    (name, type oid, generated)."""
    sql = copy_in_sql(table_name, columns, schema_name)
    oids = column_oids(table_columns, columns)
    if oids is not None:
        payload = encode_binary(records, oids)
        if payload is not None:
            return sql + " (FORMAT binary)", payload
    return sql, records_payload(records)
