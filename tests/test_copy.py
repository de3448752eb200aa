"""COPY in and out: rows of every common type, large payloads, errors, and the connection after."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import uuid

import pytest

import agentdb


async def test_copy_records_round_trip(conn: agentdb.Connection) -> None:
    await conn.execute(
        "CREATE TEMP TABLE cp (id int, name text, amount numeric, at timestamptz, "
        "u uuid, raw bytea, tags text[], doc jsonb, ok bool, note text)"
    )
    at = dt.datetime(2024, 2, 29, 12, 0, tzinfo=dt.timezone.utc)
    rows = [
        (1, "plain", decimal.Decimal("1.50"), at, uuid.UUID(int=1), b"\x00\x01", ["a", "b c"],
         {"k": [1, 2]}, True, None),
        (2, "tab\there\nnewline \\ back", decimal.Decimal("-0"), at, uuid.UUID(int=2), b"",
         [], {}, False, "x"),
    ]
    tag = await conn.copy_records_to_table(
        "cp", records=rows,
        columns=["id", "name", "amount", "at", "u", "raw", "tags", "doc", "ok", "note"],
    )
    assert tag == "COPY 2"
    got = [tuple(r) for r in await conn.fetch("SELECT * FROM cp ORDER BY id")]
    assert got == rows


async def test_copy_large_payload_and_out(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE big (id int, payload text)")
    n = 50_000
    tag = await conn.copy_records_to_table(
        "big", records=((i, "x" * 100) for i in range(n))
    )
    assert tag == f"COPY {n}"
    assert await conn.fetchval("SELECT count(*) FROM big") == n
    data = await conn.copy_from_table("big", columns=["id"])
    assert data.count(b"\n") == n and data.startswith(b"0\n")
    csv = await conn.copy_from_query("SELECT 1 AS a, 'x,y' AS b", format="csv")
    assert csv == b'1,"x,y"\n'
    await conn.copy_to_table("big", source=b"-7,\"q\"\n", format="csv")
    assert await conn.fetchval("SELECT payload FROM big WHERE id = -7") == "q"


async def test_copy_errors_leave_the_connection_usable(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE ce (id int primary key)")
    with pytest.raises(agentdb.errors.UniqueViolation):
        await conn.copy_records_to_table("ce", records=[(1,), (1,)])
    with pytest.raises(agentdb.errors.UndefinedTable):
        await conn.copy_records_to_table("no_such_table_x", records=[(1,)])
    with pytest.raises(agentdb.DataError):
        await conn.copy_records_to_table("ce", records=[("nul\x00",)])
    # COPY through execute() says what to use instead.
    with pytest.raises(agentdb.NotSupportedError, match="copy_records_to_table"):
        await conn.execute("COPY ce FROM STDIN")
    with pytest.raises(agentdb.NotSupportedError, match="copy_from_query"):
        await conn.execute("COPY ce TO STDOUT")
    assert await conn.fetchval("SELECT count(*) FROM ce") == 0
    # Statements issued while a COPY runs wait their turn (fetchval is issued when called;
    # the COPY coroutine issues its statement when it first runs).
    copy = asyncio.ensure_future(
        conn.copy_records_to_table("ce", records=[(i,) for i in range(1000)])
    )
    await asyncio.sleep(0)
    count = conn.fetchval("SELECT count(*) FROM ce")
    assert await copy == "COPY 1000"
    assert await count == 1000


def test_copy_text_payload_exact() -> None:
    """The payload itself: escapes, NULL, ints of every size, floats, bytes, rows as lists."""
    import enum

    from agentdb import _core

    class Color(str, enum.Enum):
        RED = "red"

    rows = [
        (0, -1, 2**63 - 1, -(2**63), 2**70, True, None),
        ["a\tb", "c\nd", "e\\f", "g\rh", "", "é", Color.RED],
        (1.5, float("inf"), float("-inf"), b"\x00\xff", bytearray(b"\\"), memoryview(b"A")),
        (),
    ]
    assert _core._copy_text(rows) == (
        b"0\t-1\t9223372036854775807\t-9223372036854775808\t1180591620717411303424\tt\t\\N\n"
        b"a\\tb\tc\\nd\te\\\\f\tg\\rh\t\t\xc3\xa9\tred\n"
        b"1.5\tInfinity\t-Infinity\t\\\\x00ff\t\\\\x5c\t\\\\x41\n"
        b"\n"
    )
    assert _core._copy_text(iter([])) == b""
    with pytest.raises(TypeError, match="sequences"):
        _core._copy_text([1])
    with pytest.raises(agentdb.DataError, match="record 2, column 1"):
        _core._copy_text([("ok",), ("nul\x00",)])
    with pytest.raises(TypeError):
        _core._copy_text(5)


def test_copy_binary_payload_exact() -> None:
    """The payload itself: header, field counts, lengths, NULL, values, trailer."""
    from agentdb import _core

    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    payload = _core._copy_binary([(1, None, "ab"), [-2, True, ""]], (23, 16, 25))
    assert payload == (
        header
        + b"\x00\x03" + b"\x00\x00\x00\x04\x00\x00\x00\x01" + b"\xff\xff\xff\xff"
        + b"\x00\x00\x00\x02ab"
        + b"\x00\x03" + b"\x00\x00\x00\x04\xff\xff\xff\xfe" + b"\x00\x00\x00\x01\x01"
        + b"\x00\x00\x00\x00"
        + b"\xff\xff"
    )
    assert _core._copy_binary([], ()) == header + b"\xff\xff"
    assert _core._copy_binary([()], ()) == header + b"\x00\x00\xff\xff"
    # numeric 1.50: 1 digit, weight 0, positive, scale 2: 1 and 5000 (base 10000)
    assert _core._copy_binary([(decimal.Decimal("1.50"),)], (1700,)) == (
        header + b"\x00\x01\x00\x00\x00\x0c" + b"\x00\x02\x00\x00\x00\x00\x00\x02\x00\x01\x13\x88"
        + b"\xff\xff"
    )
    # int4[] {7}: 1 dimension, no NULL, element type 23, length 1 from 1, then the element.
    assert _core._copy_binary([([7],)], (1007,)) == (
        header + b"\x00\x01\x00\x00\x00\x1c" + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x17"
        + b"\x00\x00\x00\x01\x00\x00\x00\x01" + b"\x00\x00\x00\x04\x00\x00\x00\x07" + b"\xff\xff"
    )
    # No binary encoder for inet (869): None, and the records are not read.
    records = iter([(1, "10.0.0.1")])
    assert _core._copy_binary(records, (23, 869)) is None
    assert next(records) == (1, "10.0.0.1")
    with pytest.raises(agentdb.DataError, match="record 2 has 1 value;"):
        _core._copy_binary([(1, 2), (1,)], (23, 23))
    with pytest.raises(TypeError, match="sequences"):
        _core._copy_binary([1], (23,))
    with pytest.raises(TypeError):
        _core._copy_binary(5, (23,))
    with pytest.raises(TypeError):
        _core._copy_binary([], [23])
    with pytest.raises(OverflowError):
        _core._copy_binary([], (2**40,))
