"""COPY in and out: rows of every common type, large payloads, errors, and the connection after."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
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


async def _copy_format(conn: agentdb.Connection, table: str, columns: list[str] | None) -> str:
    """The COPY statement copy_records_to_table sends for ``table`` (binary or text)."""
    from agentdb import copy_format

    rows = await conn.fetch(copy_format.columns_sql(conn._server_version_num()), table)
    sql, _ = copy_format.copy_records(rows, table, columns, None, [])
    return sql


async def test_copy_binary_round_trip_every_type(conn: agentdb.Connection) -> None:
    """Every common type through binary COPY, read back equal; the text path agrees."""
    D = decimal.Decimal
    cols = (
        "i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric, n2 numeric(10, 2), "
        "t text, vc varchar(20), bp char(3), b bool, raw bytea, d date, ts timestamp, "
        "tstz timestamptz, tm time, ttz timetz, iv interval, u uuid, jb jsonb, js json, "
        "ai int[], at text[], an numeric[], af float8[], ats timestamptz[]"
    )
    await conn.execute(f"CREATE TEMP TABLE cb ({cols})")
    await conn.execute(f"CREATE TEMP TABLE ct ({cols})")
    assert (await _copy_format(conn, "cb", None)).endswith("(FORMAT binary)")
    utc = dt.timezone.utc
    plus2 = dt.timezone(dt.timedelta(hours=2))
    rows = [
        (
            -32768, 2**31 - 1, -(2**63), 1.5, -2.25e300, D("12345678901234567890.0123456789"),
            D("-1.50"), "plain", "tab\there\nnewline \\", "ab ", True, b"\x00\x01\xff",
            dt.date(2024, 2, 29), dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
            dt.datetime(2024, 2, 29, 12, 0, tzinfo=utc), dt.time(1, 2, 3, 4),
            dt.time(23, 0, tzinfo=plus2), dt.timedelta(days=-3, seconds=5, microseconds=7),
            uuid.UUID(int=2**128 - 1), {"k": [1, 2.5, None, "é"]}, {"a": [1, "x"]},
            [[1, 2], [3, None]], ["a", "b c", "", None, 'q"uote', "NULL"],
            [D("1.1"), None, D("-0.001")], [float("inf"), -0.0],
            [dt.datetime(2000, 1, 1, tzinfo=utc)],
        ),
        (
            0, 0, 0, 0.0, float("inf"), D("0.00"), D("0"), "", "", "   ", False, b"",
            dt.date(1, 1, 2), dt.datetime(1, 1, 1, 0, 0, 1),
            dt.datetime(9999, 12, 30, tzinfo=utc), dt.time(0, 0), dt.time(0, 0, tzinfo=utc),
            dt.timedelta(0), uuid.UUID(int=0), {"e": []}, {}, [], [], [], [], [],
        ),
        (
            1, -1, 1, -1.0, float("nan"), D("NaN"), D("99999999.99"), "é" * 100, "x" * 20, "xyz",
            True, bytes(range(256)), dt.date.max, dt.datetime.max,
            dt.datetime.min.replace(tzinfo=utc), dt.time.max,
            dt.time(12, 30, tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30))),
            dt.timedelta(days=999, microseconds=1),
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "null", '"a string"', [2**31 - 1], ["\\"], [D("Infinity"), D("-Infinity")], [None],
            [None],
        ),
        (None,) * 26,
    ]
    assert await conn.copy_records_to_table("cb", records=rows) == "COPY 4"
    await conn._copy("COPY ct FROM STDIN", agentdb._core._copy_text(rows))
    got = [tuple(r) for r in await conn.fetch("SELECT * FROM cb")]
    via_text = [tuple(r) for r in await conn.fetch("SELECT * FROM ct")]
    assert len(got) == 4

    def same(a: object, b: object) -> bool:
        if isinstance(a, float) and isinstance(b, float) and a != a:
            return b != b
        if isinstance(a, decimal.Decimal) and isinstance(b, decimal.Decimal) and a.is_nan():
            return b.is_nan()
        return a == b

    for sent, back, text in zip(rows, got, via_text, strict=True):
        for i, (s, b, t) in enumerate(zip(sent, back, text, strict=True)):
            assert same(b, t), (i, b, t)
            if i in (19, 20) and isinstance(s, str):  # JSON text comes back parsed
                s = json.loads(s)
            if i == 9 and s is not None:  # char(3)
                s = s.ljust(3)
            assert same(b, s), (i, s, b)
    # numeric keeps its scale and exact digits in binary.
    scales = await conn.fetch("SELECT n::text, n2::text FROM cb WHERE i4 IS NOT NULL ORDER BY i4")
    assert [tuple(r) for r in scales] == [
        ("NaN", "99999999.99"), ("0.00", "0.00"),
        ("12345678901234567890.0123456789", "-1.50"),
    ]


async def test_copy_binary_numeric_edges(conn: agentdb.Connection) -> None:
    D = decimal.Decimal
    await conn.execute("CREATE TEMP TABLE cn (k int, n numeric)")
    values = [
        D("1E+5"), D("1.5E-7"), D("0E-10"), D("-0"), D("0.0001"), D("10000"), D("9999.9999"),
        D("1E+100"), D("-1E-100"), D("123456789.987654321"), 7, -2**70, 0.1, 1e-7, 1e16,
    ]
    await conn.copy_records_to_table("cn", records=list(enumerate(values)))
    got = await conn.fetch("SELECT k, n, n::text AS t FROM cn ORDER BY k")
    for (k, v), r in zip(enumerate(values), got, strict=True):
        want = D(repr(v)) if isinstance(v, float) else D(v)
        assert r["n"] == want, (k, v, r["n"])
        # The same text the server makes of the value's text.
        assert r["t"] == await conn.fetchval("SELECT $1::text::numeric::text", str(want)), k
    with pytest.raises(agentdb.DataError, match="COPY record 1, column 2: .*out of numeric"):
        await conn.copy_records_to_table("cn", records=[(1, D("1E+200000"))])


async def test_copy_without_binary_encoder_uses_text(conn: agentdb.Connection) -> None:
    """A column type without a binary encoder (enum, inet): the whole COPY goes as text."""
    await conn.execute("DROP TYPE IF EXISTS cb_mood CASCADE")
    await conn.execute("CREATE TYPE cb_mood AS ENUM ('sad', 'ok', 'happy')")
    try:
        await conn.execute("CREATE TEMP TABLE cf (id int, mood cb_mood, addr inet, note text)")
        assert not (await _copy_format(conn, "cf", None)).endswith("(FORMAT binary)")
        # Without the enum and inet columns it is binary.
        assert (await _copy_format(conn, "cf", ["note", "id"])).endswith("(FORMAT binary)")
        rows = [(1, "happy", "10.0.0.1", "a\tb"), (2, None, "::1", None)]
        assert await conn.copy_records_to_table("cf", records=iter(rows)) == "COPY 2"
        got = [
            tuple(r) for r in await conn.fetch("SELECT id, mood::text, addr::text, note FROM cf")
        ]
        assert got == [(1, "happy", "10.0.0.1/32", "a\tb"), (2, None, "::1/128", None)]
        await conn.copy_records_to_table("cf", records=[("n", 3)], columns=["note", "id"])
        assert await conn.fetchval("SELECT note FROM cf WHERE id = 3") == "n"
    finally:
        await conn.execute("DROP TABLE IF EXISTS cf")
        await conn.execute("DROP TYPE cb_mood")


async def test_copy_binary_columns_domains_generated(conn: agentdb.Connection) -> None:
    """Columns in any order, a domain (binary as its base type), a generated column and a
    dropped one (COPY without a column list skips both), a schema-qualified table."""
    await conn.execute("DROP DOMAIN IF EXISTS cb_pos CASCADE")
    await conn.execute("CREATE DOMAIN cb_pos AS int CHECK (VALUE > 0)")
    try:
        await conn.execute(
            "CREATE TEMP TABLE cg (a int, gone text, p cb_pos, "
            "twice int GENERATED ALWAYS AS (a * 2) STORED, \"Mixed Case\" text)"
        )
        await conn.execute("ALTER TABLE cg DROP COLUMN gone")
        assert (await _copy_format(conn, "cg", None)).endswith("(FORMAT binary)")
        await conn.copy_records_to_table("cg", records=[(1, 5, "x")])
        await conn.copy_records_to_table(
            "cg", records=[("y", 2, 6)], columns=["Mixed Case", "a", "p"]
        )
        schema = await conn.fetchval(
            "SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()"
        )
        await conn.copy_records_to_table("cg", records=[(3, 7, None)], schema_name=schema)
        got = [
            tuple(r)
            for r in await conn.fetch('SELECT a, p, twice, "Mixed Case" FROM cg ORDER BY a')
        ]
        assert got == [(1, 5, 2, "x"), (2, 6, 4, "y"), (3, 7, 6, None)]
        with pytest.raises(agentdb.errors.CheckViolation):
            await conn.copy_records_to_table("cg", records=[(4, -1, None)])
        with pytest.raises(agentdb.errors.UndefinedColumn):
            await conn.copy_records_to_table("cg", records=[(4,)], columns=["nope"])
        with pytest.raises(agentdb.errors.InvalidColumnReference, match="generated"):
            await conn.copy_records_to_table("cg", records=[(4,)], columns=["twice"])
        assert await conn.fetchval("SELECT count(*) FROM cg") == 3
    finally:
        await conn.execute("DROP TABLE IF EXISTS cg")
        await conn.execute("DROP DOMAIN cb_pos")


async def test_copy_binary_bad_records_leave_the_connection_usable(
    conn: agentdb.Connection,
) -> None:
    await conn.execute("CREATE TEMP TABLE cw (a int, b text, c float8)")
    with pytest.raises(agentdb.DataError, match=r"COPY record 2 has 2 values; .* are 3"):
        await conn.copy_records_to_table("cw", records=[(1, "x", 1.0), (2, "y")])
    with pytest.raises(agentdb.DataError, match=r"COPY record 3 has 4 values"):
        await conn.copy_records_to_table("cw", records=iter([(1, "x", 1.0)] * 2 + [(1,) * 4]))
    with pytest.raises(agentdb.DataError, match=r"COPY record 1 has 2 values; .* are 1"):
        await conn.copy_records_to_table("cw", records=[(1, "x")], columns=["a"])
    with pytest.raises(
        agentdb.DataError, match=r"^COPY record 2, column 1: 'x' \(an int is required for int4\)"
    ) as info:
        await conn.copy_records_to_table("cw", records=[(1, "a", 1.0), ("x", "b", 2.0)])
    assert isinstance(info.value.__cause__, agentdb.DataError)
    with pytest.raises(agentdb.DataError, match=r"COPY record 1, column 3: .*float is required"):
        await conn.copy_records_to_table("cw", records=[(1, "a", "1.5")])
    with pytest.raises(agentdb.DataError, match=r"COPY record 1, column 2: .*NUL"):
        await conn.copy_records_to_table("cw", records=[(1, "a\x00", 1.0)])
    with pytest.raises(agentdb.DataError, match=r"COPY record 1, column 1: .*out of int4 range"):
        await conn.copy_records_to_table("cw", records=[(2**31, "a", 1.0)])
    with pytest.raises(TypeError, match="sequences"):
        await conn.copy_records_to_table("cw", records=[5])
    assert await conn.fetchval("SELECT count(*) FROM cw") == 0
    # A statement issued while the bad COPY was pending still runs, then a good COPY.
    bad = asyncio.ensure_future(conn.copy_records_to_table("cw", records=[(1,)]))
    await asyncio.sleep(0)
    after = conn.fetchval("SELECT 41 + 1")
    with pytest.raises(agentdb.DataError):
        await bad
    assert await after == 42
    assert await conn.copy_records_to_table("cw", records=[(1, "x", 0.5)]) == "COPY 1"
    assert await conn.fetchval("SELECT count(*) FROM cw") == 1


async def test_copy_cancelled_or_timed_out_while_looking_up_columns(
    conn: agentdb.Connection,
) -> None:
    """The COPY holds its place while the column types are fetched; given up then, it is
    dropped unsent and what was issued after it runs."""
    await conn.execute("CREATE TEMP TABLE cx (a int)")
    copy = asyncio.ensure_future(conn.copy_records_to_table("cx", records=[(1,)]))
    await asyncio.sleep(0)
    after = conn.fetchval("SELECT count(*) FROM cx")
    copy.cancel()
    with pytest.raises(asyncio.CancelledError):
        await copy
    assert await after == 0
    # Behind a slow statement, the lookup and the COPY wait past their timeout.
    slow = conn.fetchval("SELECT pg_sleep(0.5)")
    with pytest.raises(TimeoutError):
        await conn.copy_records_to_table("cx", records=[(1,)], timeout=0.2)
    await slow
    assert await conn.fetchval("SELECT count(*) FROM cx") == 0
    assert await conn.copy_records_to_table("cx", records=[(2,)]) == "COPY 1"


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


def test_copy_text_payload_survives_a_record_changed_while_encoded() -> None:
    """A value whose str() empties the list it is in: no read past the list's end, and the
    record is sent as it was when its line began (a snapshot, as query arguments are)."""
    from agentdb import _core

    record: list[object] = []

    class Shrinks:
        def __str__(self) -> str:
            record.clear()
            return "s"

    record.extend([Shrinks(), "never read", "nor this"])
    assert _core._copy_text([record]) == b"s\tnever read\tnor this\n"
    assert record == []
