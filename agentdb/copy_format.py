"""Driver layer: COPY statements and payloads: rows into a table, tables and queries out.

Rows go in binary format when every column type has a binary encoder, else in text;
tables and query results come out in text or csv.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from . import _core
from ._sql import qualified, quote_ident


def records_payload(records: Iterable[Sequence[Any]]) -> bytes:
    """The COPY FROM STDIN payload (text format) for ``records``: each value as the text an
    untyped parameter is sent as, with COPY's escapes, ``\\N`` for None (built in C)."""
    return _core._copy_text(records)


def column_list(columns: Sequence[str] | None) -> str:
    """`` ("a", "b")`` for COPY, or nothing for every column."""
    return " (" + ", ".join(quote_ident(c) for c in columns) + ")" if columns else ""


def format_option(format: str) -> str:
    """COPY's option for ``format`` ("text" or "csv"); ValueError for anything else."""
    if format not in ("text", "csv"):
        raise ValueError("format must be 'text' or 'csv'")
    return " (FORMAT csv)" if format == "csv" else ""


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


def copy_records(
    table_columns: Iterable[Any],
    table_name: str,
    columns: Sequence[str] | None,
    schema_name: str | None,
    records: Iterable[Sequence[Any]],
) -> tuple[str, bytes]:
    """The COPY statement and its payload for ``records``: binary when every column being
    filled has a binary encoder, else text. ``table_columns`` are the rows of COLUMNS_SQL:
    (name, type oid, generated)."""
    sql = copy_in_sql(table_name, columns, schema_name)
    if columns is None:
        oids: tuple[int, ...] | None = tuple(oid for _, oid, gen in table_columns if not gen)
    else:
        by_name = {name: oid for name, oid, _ in table_columns}
        # A column the table lacks: the server says so, in text format.
        oids = tuple(by_name[c] for c in columns) if all(c in by_name for c in columns) else None
    if oids is not None:
        payload = _core._copy_binary(records, oids)
        if payload is not None:
            return sql + " (FORMAT binary)", payload
    return sql, records_payload(records)
