"""COPY: rows to a table and query results out, in PostgreSQL's text COPY format."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from . import _core

# COPY text format escapes (https://www.postgresql.org/docs/current/sql-copy.html).
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified(name: str, schema_name: str | None) -> str:
    return f"{quote_ident(schema_name)}.{quote_ident(name)}" if schema_name else quote_ident(name)


def _text(value: Any) -> str:
    """One value in COPY text format (the same text agentdb sends untyped parameters as)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        text = value
    else:
        data, fmt = _core._encode(0, value)
        if data is None:
            return "\\N"
        text = "\\x" + data.hex() if fmt == 1 else data.decode("utf-8")
    if "\x00" in text:
        raise _core.DataError("a value containing NUL (\\x00) cannot be sent to PostgreSQL")
    return text.translate(_ESCAPES)


def records_payload(records: Iterable[Sequence[Any]]) -> bytes:
    """The COPY FROM STDIN payload (text format) for ``records``."""
    lines = ["\t".join([_text(v) for v in row]) + "\n" for row in records]
    return "".join(lines).encode("utf-8")


def copy_in_sql(table_name: str, columns: Sequence[str] | None, schema_name: str | None) -> str:
    cols = " (" + ", ".join(quote_ident(c) for c in columns) + ")" if columns else ""
    return f"COPY {qualified(table_name, schema_name)}{cols} FROM STDIN"
