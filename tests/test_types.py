"""Every supported type round-trips through the server with agentdb itself, both ways."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from typing import Any

import pytest

import agentdb

UTC = dt.timezone.utc
D = decimal.Decimal

CASES: list[tuple[str, Any]] = [
    ("bool", True),
    ("bool", False),
    ("int2", -32768),
    ("int2", 32767),
    ("int4", -(2**31)),
    ("int4", 2**31 - 1),
    ("int8", -(2**63)),
    ("int8", 2**63 - 1),
    ("float8", 1.5),
    ("float8", -0.0),
    ("float8", math.inf),
    ("float8", -math.inf),
    ("float4", 0.25),
    ("numeric", D("0")),
    ("numeric", D("-123456789012345678901234567890.000000000000000001")),
    ("numeric", D("1E-30")),
    ("numeric", D("NaN")),
    ("numeric", D("Infinity")),
    ("numeric", D("-Infinity")),
    ("text", ""),
    ("text", "héllo wörld ✓ 𝄞"),
    ("varchar", "v"),
    ("bpchar", "abc"),
    ("name", "a_name"),
    ("bytea", b""),
    ("bytea", bytes(range(256))),
    ("date", dt.date(2024, 2, 29)),
    ("date", dt.date(1, 1, 1)),
    ("date", dt.date(9999, 12, 31)),
    ("time", dt.time(23, 59, 59, 999999)),
    ("timetz", dt.time(12, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))),
    ("timestamp", dt.datetime(2000, 1, 1, 0, 0, 0, 1)),
    ("timestamp", dt.datetime(1969, 12, 31, 23, 59, 59)),
    ("timestamptz", dt.datetime(2024, 3, 10, 2, 30, tzinfo=UTC)),
    ("interval", dt.timedelta(days=-3, seconds=5, microseconds=7)),
    ("interval", dt.timedelta(0)),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("json", {"a": [1, 2, {"b": None}], "c": "d"}),
    ("jsonb", [1, "two", 3.5, True, None]),
    ("int4[]", [1, None, 3]),
    ("int4[]", []),
    ("text[]", ["a", "b c", 'q"uote', "back\\slash", None, ""]),
    ("int8[]", [[1, 2], [3, 4]]),
    ("float8[]", [1.0, math.inf]),
    ("bool[]", [True, False]),
    ("uuid[]", [uuid.UUID(int=1), uuid.UUID(int=2)]),
    ("timestamptz[]", [dt.datetime(2020, 1, 1, tzinfo=UTC)]),
    ("date[]", [dt.date(2020, 1, 1), None]),
    ("numeric[]", [D("1.5"), D("-2")]),
    ("bytea[]", [b"\x00\x01", b""]),
    ("jsonb[]", [{"a": 1}]),
]


@pytest.mark.parametrize(
    ("pgtype", "value"), CASES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CASES)]
)
async def test_round_trip(conn: agentdb.Connection, pgtype: str, value: Any) -> None:
    got = await conn.fetchval(f"SELECT $1::{pgtype}", value)
    if pgtype == "bpchar":
        assert got == value
    elif isinstance(value, float) and value == 0 and math.copysign(1, value) < 0:
        assert got == 0 and math.copysign(1, got) < 0
    elif isinstance(value, D) and value.is_nan():
        assert isinstance(got, D) and got.is_nan()
    else:
        assert got == value
        assert type(got) is type(value)
    # NULL of every type.
    assert await conn.fetchval(f"SELECT $1::{pgtype}", None) is None
    # Through a table and text format too (an unknown type in the row forces text).
    row = await conn.fetchrow(f"SELECT $1::{pgtype} AS v, '(1,2)'::point AS t", value)
    assert row is not None and row["t"] == "(1,2)"
    if not (isinstance(value, D) and value.is_nan()) and pgtype != "bpchar":
        assert row["v"] == value


async def test_timestamptz_is_aware_and_naive_is_utc(conn: agentdb.Connection) -> None:
    await conn.execute("SET TIME ZONE 'America/New_York'")
    got = await conn.fetchval("SELECT '2024-06-01 12:00:00+02'::timestamptz")
    assert got == dt.datetime(2024, 6, 1, 10, 0, tzinfo=UTC) and got.tzinfo is not None
    aware = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert await conn.fetchval("SELECT $1::timestamptz", aware) == aware
    naive = dt.datetime(2024, 6, 1, 12, 0)
    assert await conn.fetchval("SELECT $1::timestamptz", naive) == naive.replace(tzinfo=UTC)


async def test_infinite_dates(conn: agentdb.Connection) -> None:
    assert await conn.fetchval("SELECT 'infinity'::date") == dt.date.max
    assert await conn.fetchval("SELECT '-infinity'::date") == dt.date.min
    assert await conn.fetchval("SELECT 'infinity'::timestamp") == dt.datetime.max
    ts = await conn.fetchval("SELECT '-infinity'::timestamptz")
    assert ts.replace(tzinfo=None) == dt.datetime.min


async def test_text_format_results_decode_too(conn: agentdb.Connection, pg_dsn: str) -> None:
    # execute() without arguments uses the simple protocol: every value arrives as text.
    await conn.execute(
        "CREATE TEMP TABLE tx AS SELECT 1::int4 AS i, 2.5::numeric AS n, "
        "'2024-01-02 03:04:05+00'::timestamptz AS ts, '{1,2}'::int4[] AS a, "
        "'{\"k\": 1}'::jsonb AS j, 'abc'::bytea AS b"
    )
    conn2 = await agentdb.connect(pg_dsn, statement_cache_size=0)
    try:
        await conn2.execute("SELECT 1")
        row = await conn2.fetchrow(
            "SELECT 1::int4 AS i, 2.5::numeric AS n, '2024-01-02 03:04:05+00'::timestamptz "
            "AS ts, '{1,2}'::int4[] AS a, '{\"k\": 1}'::jsonb AS j, 'abc'::bytea AS b, "
            "'(1,2)'::point AS p"
        )
    finally:
        await conn2.close()
    assert row is not None
    assert row["i"] == 1 and row["n"] == D("2.5")
    assert row["ts"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row["a"] == [1, 2] and row["j"] == {"k": 1} and row["b"] == b"abc"
    assert row["p"] == "(1,2)"  # a type without a codec arrives as text


async def test_unknown_types_as_text_and_enums(conn: agentdb.Connection) -> None:
    await conn.execute("DROP TYPE IF EXISTS mood_t; CREATE TYPE mood_t AS ENUM ('sad', 'ok')")
    try:
        assert await conn.fetchval("SELECT $1::mood_t", "ok") == "ok"
        assert await conn.fetchval("SELECT '10.0.0.1'::inet") == "10.0.0.1"
        assert await conn.fetchval("SELECT $1::inet", "10.0.0.2") == "10.0.0.2"
    finally:
        await conn.execute("DROP TYPE mood_t")


async def test_json_parameters(conn: agentdb.Connection) -> None:
    assert await conn.fetchval("SELECT $1::jsonb ->> 'a'", {"a": "b"}) == "b"
    assert await conn.fetchval("SELECT $1::jsonb", '{"raw": true}') == {"raw": True}
    assert json.loads(await conn.fetchval("SELECT $1::jsonb::text", [1, 2])) == [1, 2]


async def test_wrong_python_types_are_data_errors(conn: agentdb.Connection) -> None:
    for sql, value in [
        ("SELECT $1::int4", "1"),
        ("SELECT $1::int4", 1.5),
        ("SELECT $1::bool", "yes"),
        ("SELECT $1::uuid", "not-a-uuid"),
        ("SELECT $1::timestamptz", "2024-01-01"),
        ("SELECT $1::bytea", "text"),
        ("SELECT $1::int4[]", "{1,2}"),
        ("SELECT $1::int8", 2**63),
    ]:
        with pytest.raises(agentdb.DataError, match=r"\$1"):
            await conn.fetchval(sql, value)
    assert await conn.fetchval("SELECT 1") == 1


async def test_json_numbers_stay_exact(conn: agentdb.Connection) -> None:
    # Whatever JSON parser is in use (orjson when installed), big numbers are not rounded.
    big = 123456789012345678901234567890
    assert await conn.fetchval("SELECT $1::text::jsonb", f'{{"big": {big}}}') == {"big": big}
    assert await conn.fetchval("SELECT $1::text::json", f"[{big}, 1.5]") == [big, 1.5]
    doc = {"k": [1, "\u00e9", None, True]}
    assert await conn.fetchval("SELECT $1::jsonb", doc) == doc
