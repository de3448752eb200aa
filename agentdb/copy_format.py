"""COPY: rows to a table and query results out, in PostgreSQL's text COPY format."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from . import _core


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified(name: str, schema_name: str | None) -> str:
    return f"{quote_ident(schema_name)}.{quote_ident(name)}" if schema_name else quote_ident(name)


def records_payload(records: Iterable[Sequence[Any]]) -> bytes:
    """The COPY FROM STDIN payload (text format) for ``records``: each value as the text an
    untyped parameter is sent as, with COPY's escapes, ``\\N`` for None (built in C)."""
    return _core._copy_text(records)


def copy_in_sql(table_name: str, columns: Sequence[str] | None, schema_name: str | None) -> str:
    cols = " (" + ", ".join(quote_ident(c) for c in columns) + ")" if columns else ""
    return f"COPY {qualified(table_name, schema_name)}{cols} FROM STDIN"
