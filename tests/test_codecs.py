"""Tests of src/codecs/ through the _core._decode/_core._encode hooks.

The server tests take exact wire bytes (binary and text) from a real PostgreSQL through
psycopg's raw results and check both decoders against the expected Python value, then
send our encodings back and check what the server understood.  They are skipped when no
server answers at host=127.0.0.1 user=postgres dbname=test.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
import struct
import uuid
from decimal import Decimal

import pytest

from agentdb import _core

DataError = getattr(_core, "DataError", None) or ValueError
# Until errors.c lands, DataError is a ValueError fallback; accept either.
BAD = (DataError, ValueError)

UTC = dt.timezone.utc
DSN = "host=127.0.0.1 user=postgres dbname=test"


def dec(oid, data, binary):
    return _core._decode(oid, data, binary)


def enc(oid, value):
    return _core._encode(oid, value)


def tz(**kw):
    return dt.timezone(dt.timedelta(**kw))


def same(a, b):
    """Equality that also checks types, Decimal exponents, NaN and tzinfo offsets."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.utcoffset() == b.utcoffset() and (a.tzinfo is None) == (b.tzinfo is None)
    return a == b


# ------------------------------------------------------------------------------------------
# Cases: (SQL expression, type OID, expected Python value)

U1 = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")

CASES = [
    ("true", 16, True),
    ("false", 16, False),
    ("'\\x00ff10'::bytea", 17, b"\x00\xff\x10"),
    ("''::bytea", 17, b""),
    ("'x'::\"char\"", 18, "x"),
    ("'abc'::name", 19, "abc"),
    ("(-9223372036854775808)::int8", 20, -(2**63)),
    ("9223372036854775807::int8", 20, 2**63 - 1),
    ("(-32768)::int2", 21, -32768),
    ("32767::int2", 21, 32767),
    ("(-2147483648)::int4", 23, -(2**31)),
    ("2147483647::int4", 23, 2**31 - 1),
    ("0::int4", 23, 0),
    ("'héllo ☃ 𝄞'::text", 25, "héllo ☃ 𝄞"),
    ("''::text", 25, ""),
    ("4294967295::oid", 26, 4294967295),
    ("'{\"a\": [1, 2.5, null], \"b\": \"☃\"}'::json", 114, {"a": [1, 2.5, None], "b": "☃"}),
    ("'<a>x</a>'::xml", 142, "<a>x</a>"),
    ("1.5::float4", 700, 1.5),
    ("'NaN'::float4", 700, math.nan),
    ("'Infinity'::float4", 700, math.inf),
    ("'-Infinity'::float4", 700, -math.inf),
    ("1e308::float8", 701, 1e308),
    ("5e-324::float8", 701, 5e-324),
    ("'-0'::float8", 701, -0.0),
    ("0.1::float8", 701, 0.1),
    ("'NaN'::float8", 701, math.nan),
    ("'-Infinity'::float8", 701, -math.inf),
    ("'ab'::char(4)", 1042, "ab  "),
    ("'x y'::varchar", 1043, "x y"),
    ("'2024-02-29'::date", 1082, dt.date(2024, 2, 29)),
    ("'2000-01-01'::date", 1082, dt.date(2000, 1, 1)),
    ("'1999-12-31'::date", 1082, dt.date(1999, 12, 31)),
    ("'1970-01-01'::date", 1082, dt.date(1970, 1, 1)),
    ("'0001-01-02'::date", 1082, dt.date(1, 1, 2)),
    ("'9999-12-30'::date", 1082, dt.date(9999, 12, 30)),
    ("'1900-03-01'::date", 1082, dt.date(1900, 3, 1)),
    ("'infinity'::date", 1082, dt.date.max),
    ("'-infinity'::date", 1082, dt.date.min),
    ("'00:00:00'::time", 1083, dt.time(0, 0)),
    ("'23:59:59.999999'::time", 1083, dt.time(23, 59, 59, 999999)),
    ("'12:34:56.5'::time", 1083, dt.time(12, 34, 56, 500000)),
    ("'2024-02-29 12:34:56.789'::timestamp", 1114, dt.datetime(2024, 2, 29, 12, 34, 56, 789000)),
    ("'1999-12-31 23:59:59.999999'::timestamp", 1114, dt.datetime(1999, 12, 31, 23, 59, 59, 999999)),
    ("'0001-01-01 00:00:01'::timestamp", 1114, dt.datetime(1, 1, 1, 0, 0, 1)),
    ("'9999-12-31 23:59:59.999998'::timestamp", 1114, dt.datetime(9999, 12, 31, 23, 59, 59, 999998)),
    ("'infinity'::timestamp", 1114, dt.datetime.max),
    ("'-infinity'::timestamp", 1114, dt.datetime.min),
    ("'2024-01-01 00:00:00+00'::timestamptz", 1184, dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("'1960-06-30 22:15:00.25-03:30'::timestamptz", 1184, dt.datetime(1960, 7, 1, 1, 45, 0, 250000, tzinfo=UTC)),
    ("'infinity'::timestamptz", 1184, dt.datetime.max.replace(tzinfo=UTC)),
    ("'-infinity'::timestamptz", 1184, dt.datetime.min.replace(tzinfo=UTC)),
    ("'1 year 2 mons 3 days 04:05:06.789'::interval", 1186,
     dt.timedelta(days=14 * 30 + 3, hours=4, minutes=5, seconds=6, milliseconds=789)),
    ("'-1 years -2 mons +3 days -04:05:06'::interval", 1186,
     dt.timedelta(days=-14 * 30 + 3, hours=-4, minutes=-5, seconds=-6)),
    ("'1 day -1 second'::interval", 1186, dt.timedelta(days=1, seconds=-1)),
    ("'-0.000001 second'::interval", 1186, dt.timedelta(microseconds=-1)),
    ("'0'::interval", 1186, dt.timedelta(0)),
    ("'100 hours'::interval", 1186, dt.timedelta(hours=100)),
    ("'12:00:00+05:30'::timetz", 1266, dt.time(12, tzinfo=tz(hours=5, minutes=30))),
    ("'12:00:00-08'::timetz", 1266, dt.time(12, tzinfo=tz(hours=-8))),
    ("'01:02:03.000004+00'::timetz", 1266, dt.time(1, 2, 3, 4, tzinfo=UTC)),
    ("0::numeric", 1700, Decimal("0")),
    ("0.000::numeric", 1700, Decimal("0.000")),
    ("(-12.345)::numeric", 1700, Decimal("-12.345")),
    ("10000::numeric", 1700, Decimal("10000")),
    ("100000000::numeric", 1700, Decimal("100000000")),
    ("0.0001::numeric", 1700, Decimal("0.0001")),
    ("(-0.5)::numeric", 1700, Decimal("-0.5")),
    ("0.00000000000000000001::numeric", 1700, Decimal("1E-20")),
    ("123456789012345678901234567890.123456789::numeric", 1700,
     Decimal("123456789012345678901234567890.123456789")),
    ("1e100::numeric", 1700, Decimal("1" + "0" * 100)),
    ("'NaN'::numeric", 1700, Decimal("NaN")),
    ("'Infinity'::numeric", 1700, Decimal("Infinity")),
    ("'-Infinity'::numeric", 1700, Decimal("-Infinity")),
    ("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", 2950, U1),
    ("'00000000-0000-0000-0000-000000000000'::uuid", 2950, uuid.UUID(int=0)),
    ("'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid", 2950, uuid.UUID(int=2**128 - 1)),
    ("'{\"a\": {\"b\": [true, false]}}'::jsonb", 3802, {"a": {"b": [True, False]}}),
    ("'\"s\"'::jsonb", 3802, "s"),
    # arrays
    ("'{t,f,NULL}'::bool[]", 1000, [True, False, None]),
    ("ARRAY['\\x00'::bytea, '\\x'::bytea, NULL]", 1001, [b"\x00", b"", None]),
    ("'{a,b}'::\"char\"[]", 1002, ["a", "b"]),
    ("'{a,\"b c\"}'::name[]", 1003, ["a", "b c"]),
    ("'{-32768,32767}'::int2[]", 1005, [-32768, 32767]),
    ("'{1,2,NULL}'::int4[]", 1007, [1, 2, None]),
    ("'{}'::int4[]", 1007, []),
    ("'{{1,2},{3,4},{5,NULL}}'::int4[]", 1007, [[1, 2], [3, 4], [5, None]]),
    ("'{{{1},{2}},{{3},{4}}}'::int4[]", 1007, [[[1], [2]], [[3], [4]]]),
    ("'[0:1]={7,8}'::int4[]", 1007, [7, 8]),
    ("ARRAY['a b', 'x\"y', 'back\\slash', NULL, 'NULL', '', ' lead', '{}', 'é,☃']::text[]", 1009,
     ["a b", 'x"y', "back\\slash", None, "NULL", "", " lead", "{}", "é,☃"]),
    ("'{ab,cd}'::char(3)[]", 1014, ["ab ", "cd "]),
    ("'{x,NULL}'::varchar[]", 1015, ["x", None]),
    ("'{-9223372036854775808,9223372036854775807}'::int8[]", 1016, [-(2**63), 2**63 - 1]),
    ("'{1.5,NaN,-Infinity}'::float4[]", 1021, [1.5, math.nan, -math.inf]),
    ("'{0.1,Infinity,NULL}'::float8[]", 1022, [0.1, math.inf, None]),
    ("'{0,4294967295}'::oid[]", 1028, [0, 4294967295]),
    ("ARRAY['2024-02-29 01:02:03.5'::timestamp, 'infinity']", 1115,
     [dt.datetime(2024, 2, 29, 1, 2, 3, 500000), dt.datetime.max]),
    ("ARRAY['2024-02-29'::date, 'infinity', '-infinity', NULL]", 1182,
     [dt.date(2024, 2, 29), dt.date.max, dt.date.min, None]),
    ("ARRAY['01:02:03'::time]", 1183, [dt.time(1, 2, 3)]),
    ("ARRAY['2024-01-01 00:00:00+00'::timestamptz, NULL]", 1185,
     [dt.datetime(2024, 1, 1, tzinfo=UTC), None]),
    ("ARRAY['1 day 01:00:00'::interval, '-1 mon']", 1187,
     [dt.timedelta(days=1, hours=1), dt.timedelta(days=-30)]),
    ("ARRAY[1.50, NULL, 'NaN', -0.001]::numeric[]", 1231,
     [Decimal("1.50"), None, Decimal("NaN"), Decimal("-0.001")]),
    ("ARRAY['01:00:00+02'::timetz]", 1270, [dt.time(1, tzinfo=tz(hours=2))]),
    ("ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, NULL]", 2951, [U1, None]),
    ("ARRAY['{\"a\": 1}'::json, '[1, \"x\"]']", 199, [{"a": 1}, [1, "x"]]),
    ("ARRAY['{\"a\": 1}'::jsonb, 'null']", 3807, [{"a": 1}, None]),
]

# Values the encoders cannot reproduce from the decoded value (lossy by design).
NO_ROUNDTRIP = {
    "'[0:1]={7,8}'::int4[]",  # lower bounds are dropped
    "'\"s\"'::jsonb",  # a str is sent as JSON text as it is
}


def _ids(cases):
    return [f"{c[1]}:{c[0][:40]}" for c in cases]


# ------------------------------------------------------------------------------------------
# Server fixture

@pytest.fixture(scope="module")
def pg():
    import psycopg  # a test dependency: its wire bytes are the reference
    try:
        conn = psycopg.connect(DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no PostgreSQL server: {exc}")
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET DateStyle = 'ISO, MDY'")
    conn.execute("SET IntervalStyle = 'postgres'")
    yield conn
    conn.close()


def wire(pg, sql, binary):
    """(oid, bytes) of the single value `sql` selects, in binary or text format."""
    cur = pg.cursor(binary=binary)
    cur.execute(f"SELECT {sql}")
    res = cur.pgresult
    return res.ftype(0), res.get_value(0, 0)


def server_value(pg, data, fmt, oid):
    """Send one parameter as (data, fmt, oid), get back ($1, binary wire bytes)."""
    res = pg.pgconn.exec_params(b"SELECT $1", [data], [oid], [fmt], 1)
    assert res.status == 2, res.error_message  # PGRES_TUPLES_OK
    return res.ftype(0), res.get_value(0, 0)


@pytest.mark.parametrize("sql,oid,expected", CASES, ids=_ids(CASES))
def test_decode_server_binary(pg, sql, oid, expected):
    ftype, data = wire(pg, sql, True)
    assert ftype == oid
    got = dec(oid, data, True)
    assert same(got, expected), (got, expected)


@pytest.mark.parametrize("sql,oid,expected", CASES, ids=_ids(CASES))
def test_decode_server_text(pg, sql, oid, expected):
    ftype, data = wire(pg, sql, False)
    assert ftype == oid
    got = dec(oid, data, False)
    assert same(got, expected), (got, data, expected)


ROUNDTRIP_CASES = [c for c in CASES if c[0] not in NO_ROUNDTRIP]  # lossy ones excluded


@pytest.mark.parametrize("sql,oid,expected", ROUNDTRIP_CASES, ids=_ids(ROUNDTRIP_CASES))
def test_encode_roundtrip_server(pg, sql, oid, expected):
    data, fmt = enc(oid, expected)
    ftype, back = server_value(pg, data, fmt, oid)
    assert ftype == oid
    got = dec(oid, back, True)
    assert same(got, expected), (got, expected)


@pytest.mark.parametrize(
    "zone,sql,expected",
    [
        ("Asia/Kolkata", "'2024-01-01 00:00:00+00'", dt.datetime(2024, 1, 1, tzinfo=UTC)),
        ("America/St_Johns", "'2024-07-01 01:00:00.123456+00'",
         dt.datetime(2024, 7, 1, 1, 0, 0, 123456, tzinfo=UTC)),
        # Local mean time: an offset with seconds (+00:19:32).
        ("Europe/Amsterdam", "'1900-01-01 00:00:00+00'", dt.datetime(1900, 1, 1, tzinfo=UTC)),
        ("Pacific/Kiritimati", "'0001-01-02 00:00:00+00'", dt.datetime(1, 1, 2, tzinfo=UTC)),
    ],
)
def test_timestamptz_text_offsets(pg, zone, sql, expected):
    pg.execute(f"SET TimeZone = '{zone}'")
    try:
        _, text = wire(pg, f"{sql}::timestamptz", False)
        _, binary = wire(pg, f"{sql}::timestamptz", True)
    finally:
        pg.execute("SET TimeZone = 'UTC'")
    assert same(dec(1184, text, False), expected), text
    assert same(dec(1184, binary, True), expected)


@pytest.mark.parametrize(
    "sql,oid",
    [
        ("'0044-03-15 BC'::date", 1082),
        ("'10000-01-01'::date", 1082),
        ("'0044-03-15 12:00:00 BC'::timestamp", 1114),
        ("'10000-01-01 00:00:00'::timestamp", 1114),
        ("'10000-01-01 00:00:00+00'::timestamptz", 1184),
        ("'24:00:00'::time", 1083),
        ("'178000000 years'::interval", 1186),
    ],
)
def test_out_of_python_range_raises(pg, sql, oid):
    for binary in (True, False):
        _, data = wire(pg, sql, binary)
        with pytest.raises(BAD):
            dec(oid, data, binary)


@pytest.mark.parametrize(
    "value,cast,expected_text",
    [
        (5, "int4", "5"),
        (-(2**63), "int8", "-9223372036854775808"),
        (1.5, "float8", "1.5"),
        (math.nan, "float8", "NaN"),
        (-math.inf, "float8", "-Infinity"),
        (Decimal("-1.2300"), "numeric", "-1.2300"),
        (Decimal("NaN"), "numeric", "NaN"),
        (Decimal("Infinity"), "numeric", "Infinity"),
        (Decimal("1E+5"), "numeric", "100000"),
        ("héllo", "text", "héllo"),
        (True, "bool", "true"),
        (U1, "uuid", str(U1)),
        (dt.date(2024, 2, 29), "date", "2024-02-29"),
        (dt.datetime(2024, 2, 29, 1, 2, 3, 4), "timestamp", "2024-02-29 01:02:03.000004"),
        (dt.datetime(2024, 2, 29, 1, 2, 3, tzinfo=tz(hours=2)), "timestamptz", "2024-02-28 23:02:03+00"),
        (dt.time(1, 2, 3, 5), "time", "01:02:03.000005"),
        (dt.timedelta(days=-1, seconds=1, microseconds=5), "interval", "-1 days +00:00:01.000005"),
        (dt.timedelta(days=3, seconds=7200), "interval", "3 days 02:00:00"),
        ({"a": [1, None]}, "jsonb", '{"a": [1, null]}'),
        ([1, 2, None], "int4[]", "{1,2,NULL}"),
        ([[1, 2], [3, 4]], "int4[]", "{{1,2},{3,4}}"),
        (["a b", 'q"', "back\\", None, "NULL", "", "{x}"], "text[]",
         '{"a b","q\\"","back\\\\",NULL,"NULL","","{x}"}'),
        ([b"\x00\x01"], "bytea[]", '{"\\\\x0001"}'),
        ([True, False], "bool[]", "{t,f}"),
        ([dt.date(2020, 1, 1)], "date[]", "{2020-01-01}"),
        ([], "int4[]", "{}"),
    ],
)
def test_untyped_encode_server(pg, value, cast, expected_text):
    data, fmt = enc(0, value)
    assert fmt == 0
    res = pg.pgconn.exec_params(f"SELECT $1::{cast}::text".encode(), [data], [0], [fmt], 0)
    assert res.status == 2, res.error_message
    assert res.get_value(0, 0).decode() == expected_text


def test_untyped_bytes_server(pg):
    data, fmt = enc(0, b"\x00\xff")
    assert (data, fmt) == (b"\x00\xff", 1)
    res = pg.pgconn.exec_params(b"SELECT $1", [data], [17], [fmt], 1)
    assert res.get_value(0, 0) == b"\x00\xff"


@pytest.mark.parametrize(
    "oid,value,cast_text",
    [
        (1231, [Decimal("1.5"), None, 2, 0.25, Decimal("NaN")], "{1.5,NULL,2,0.25,NaN}"),
        (1231, [[Decimal("1")], [Decimal("2")]], "{{1},{2}}"),
        (1009, [["a", "b"], ["c", None]], "{{a,b},{c,NULL}}"),
        (3807, [{"a": [1, 2]}, [1, 2], None], '{"{\\"a\\": [1, 2]}","[1, 2]",NULL}'),
        (1185, [dt.datetime(2024, 1, 1, 12, tzinfo=tz(hours=-5))], '{"2024-01-01 17:00:00+00"}'),
        (1184, dt.datetime(2024, 1, 1), "2024-01-01 00:00:00+00"),
        (1114, dt.datetime(2024, 1, 1, 12, tzinfo=tz(hours=-5)), "2024-01-01 17:00:00"),
        (1266, dt.time(12, 0, tzinfo=tz(hours=-3, minutes=-30)), "12:00:00-03:30"),
        (1266, dt.time(12, 0), "12:00:00+00"),
        (2950, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", str(U1)),
        (2950, "{a0eebc999c0b4ef8bb6d6bb9bd380a11}", str(U1)),
        (114, '{"raw": "text"}', '{"raw": "text"}'),
        (3802, [1, "x"], '[1, "x"]'),
        (20, True, "1"),
        (701, 3, "3"),
        (700, Decimal("0.5"), "0.5"),
        (1700, 10**40, "1" + "0" * 40),
        (1700, -2.5, "-2.5"),
        (1700, math.inf, "Infinity"),
        (1082, dt.datetime(2024, 5, 6, 7, 8), "2024-05-06"),
        (1082, dt.date.max, "infinity"),
        (1082, dt.date.min, "-infinity"),
        (1114, dt.datetime.max, "infinity"),
        (1184, dt.datetime.min.replace(tzinfo=UTC), "-infinity"),
    ],
)
def test_typed_encode_server(pg, oid, value, cast_text):
    data, fmt = enc(oid, value)
    res = pg.pgconn.exec_params(b"SELECT $1::text", [data], [oid], [fmt], 0)
    assert res.status == 2, res.error_message
    assert res.get_value(0, 0).decode() == cast_text


def test_enum_and_unknown_types_server(pg):
    pg.execute("DROP TYPE IF EXISTS agentdb_codec_mood")
    pg.execute("CREATE TYPE agentdb_codec_mood AS ENUM ('happy', 'sad')")
    try:
        oid = pg.execute("SELECT 'agentdb_codec_mood'::regtype::oid").fetchone()[0]

        class Mood(enum.Enum):
            HAPPY = "happy"

        for value in (Mood.HAPPY, "happy", b"happy"):
            data, fmt = enc(oid, value)
            assert (data, fmt) == (b"happy", 0)
            res = pg.pgconn.exec_params(b"SELECT $1::text", [data], [oid], [fmt], 0)
            assert res.get_value(0, 0) == b"happy"
        assert agentdb_decoder_is_text(oid)
    finally:
        pg.execute("DROP TYPE agentdb_codec_mood")


def agentdb_decoder_is_text(oid):
    # Unknown OIDs have no binary decoder, and decode as str in text.
    with pytest.raises(BAD):
        dec(oid, b"happy", True)
    return dec(oid, b"happy", False) == "happy"


# ------------------------------------------------------------------------------------------
# Without a server: hand-built vectors


def be(fmt, *v):
    return struct.pack(">" + fmt, *v)


def numeric_bin(ndigits_list, weight, sign, dscale):
    return be("hhHH", len(ndigits_list), weight, sign, dscale) + b"".join(be("H", d) for d in ndigits_list)


@pytest.mark.parametrize(
    "data,expected",
    [
        (numeric_bin([], 0, 0, 0), "0"),
        (numeric_bin([], 0, 0, 3), "0.000"),
        (numeric_bin([1], 1, 0, 0), "10000"),
        (numeric_bin([1], -1, 0, 4), "0.0001"),
        (numeric_bin([1], -2, 0, 8), "1E-8"),
        (numeric_bin([12, 3450], 0, 0x4000, 3), "-12.345"),
        (numeric_bin([9999, 9999], 0, 0, 4), "9999.9999"),
        (numeric_bin([1, 0, 0], 5, 0, 2), "100000000000000000000.00"),
        (numeric_bin([], 0, 0xC000, 0), "NaN"),
        (numeric_bin([], 0, 0xD000, 0), "Infinity"),
        (numeric_bin([], 0, 0xF000, 0), "-Infinity"),
    ],
)
def test_numeric_binary_vectors(data, expected):
    got = dec(1700, data, True)
    assert isinstance(got, Decimal)
    assert str(got) == str(Decimal(expected))


def test_numeric_huge_and_tiny():
    big = numeric_bin([1] + [0] * 1000, 1000, 0, 0)
    assert dec(1700, big, True) == Decimal(10) ** 4000
    tiny = numeric_bin([1], -4000, 0, 16000)
    assert dec(1700, tiny, True) == Decimal("1E-16000")


@pytest.mark.parametrize(
    "oid,data,expected",
    [
        (1082, be("i", 0), dt.date(2000, 1, 1)),
        (1082, be("i", -1), dt.date(1999, 12, 31)),
        (1082, be("i", 2**31 - 1), dt.date.max),
        (1082, be("i", -(2**31)), dt.date.min),
        (1114, be("q", 0), dt.datetime(2000, 1, 1)),
        (1114, be("q", -1), dt.datetime(1999, 12, 31, 23, 59, 59, 999999)),
        (1184, be("q", 86400 * 10**6), dt.datetime(2000, 1, 2, tzinfo=UTC)),
        (1266, be("qi", 0, -3600), dt.time(0, tzinfo=tz(hours=1))),
        (1186, be("qii", -1, 0, 0), dt.timedelta(microseconds=-1)),
        (1186, be("qii", 0, 1, -1), dt.timedelta(days=-29)),
        (2950, U1.bytes, U1),
        (1007, be("iiI", 0, 0, 23), []),
        (1007, be("iiIii", 1, 1, 23, 2, 1) + be("ii", 4, 7) + be("i", -1), [7, None]),
    ],
)
def test_binary_vectors(oid, data, expected):
    assert same(dec(oid, data, True), expected)


def test_uuid_fast_path_is_a_real_uuid():
    u = dec(2950, U1.bytes, True)
    assert type(u) is uuid.UUID
    assert u == U1 and hash(u) == hash(U1) and str(u) == str(U1)
    assert u.is_safe is uuid.SafeUUID.unknown
    assert u.version == 4 and u.bytes == U1.bytes
    import pickle

    assert pickle.loads(pickle.dumps(u)) == U1
    with pytest.raises(TypeError):
        u.int = 5  # still immutable


@pytest.mark.parametrize(
    "oid,text,expected",
    [
        (16, b"t", True),
        (20, b"-9223372036854775808", -(2**63)),
        (20, b"9223372036854775807", 2**63 - 1),
        (701, b"NaN", math.nan),
        (701, b"Infinity", math.inf),
        (701, b"-Infinity", -math.inf),
        (701, b"1e-310", 1e-310),
        (17, b"\\x", b""),
        (17, b"\\xDEADbeef", b"\xde\xad\xbe\xef"),
        (17, b"a\\\\b\\000\\377", b"a\\b\x00\xff"),  # bytea_output = escape
        (1082, b"2024-02-29", dt.date(2024, 2, 29)),
        (1083, b"01:02:03.1", dt.time(1, 2, 3, 100000)),
        (1114, b"2024-02-29 01:02:03", dt.datetime(2024, 2, 29, 1, 2, 3)),
        (1184, b"2024-01-01 05:30:00+05:30", dt.datetime(2024, 1, 1, tzinfo=UTC)),
        (1184, b"2024-01-01 00:00:00-00:19:32", dt.datetime(2024, 1, 1, 0, 19, 32, tzinfo=UTC)),
        (1266, b"10:00:00-03", dt.time(10, tzinfo=tz(hours=-3))),
        (1186, b"00:00:00", dt.timedelta(0)),
        (1186, b"-3 days", dt.timedelta(days=-3)),
        (1186, b"1 mon -00:00:00.5", dt.timedelta(days=30, microseconds=-500000)),
        (1186, b"2562047788:00:54.775807", dt.timedelta(microseconds=2**63 - 1)),
        (1007, b"{ 1 , 2 }", [1, 2]),
        (1007, b"{{1},{NULL}}", [[1], [None]]),
        (1009, b'{"",null,"nULL",a\\,b,"\\\\"}', ["", None, "nULL", "a,b", "\\"]),
        (1009, b"{  spaced out  }", ["spaced out"]),
        (1001, b'{"\\\\x00ff"}', [b"\x00\xff"]),
        (1231, b"{1.0,NaN}", [Decimal("1.0"), Decimal("NaN")]),
        (2951, b"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", [U1]),
        (3807, b'{"{\\"a\\": 1}"}', [{"a": 1}]),
        (12345, b"whatever \xe2\x98\x83", "whatever ☃"),
        (705, b"x", "x"),
    ],
)
def test_text_vectors(oid, text, expected):
    assert same(dec(oid, text, False), expected), dec(oid, text, False)


@pytest.mark.parametrize(
    "oid,text",
    [
        (16, b"true"), (16, b""), (23, b""), (23, b"1x"), (23, b"-"), (20, b"99999999999999999999"),
        (701, b""), (701, b"1.5x"), (1700, b"1 2"), (1700, b"abc"), (1700, b"1_000"),
        (17, b"\\x0"), (17, b"\\xzz"), (17, b"\\9"),
        (1082, b"2023-02-29"), (1082, b"2024-13-01"), (1082, b"24-01-01"), (1082, b"2024-01-01x"),
        (1082, b"0000-01-01"), (1082, b"0044-03-15 BC"), (1082, b"10000-01-01"),
        (1083, b"25:00:00"), (1083, b"24:00:00"), (1083, b"01:02"), (1083, b"01:02:03."),
        (1083, b"01:02:03.1234567"),
        (1114, b"2024-01-01"), (1114, b"2024-01-01 00:00:00+00"), (1114, b"9999-12-31 24:00:00"),
        (1184, b"2024-01-01 00:00:00"), (1184, b"0001-01-01 00:00:00+01"),
        (1184, b"9999-12-31 23:00:00-01:00:01"), (1266, b"10:00:00+25"),
        (1186, b"1 fortnight"), (1186, b"1"), (1186, b"1 day 00:00"), (1186, b"999999999999999 years"),
        (2950, b"a0eebc99"), (2950, b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g"),
        (114, b"{"), (3802, b"\xff"), (25, b"\xff\xfe"),
        (1007, b""), (1007, b"{"), (1007, b"{1,"), (1007, b"{1}}"), (1007, b'{"1}'), (1007, b"{,}"),
        (1007, b"{{{{{{{1}}}}}}}"), (1007, b"[1:2]"), (1007, b"{a}"), (1009, b'{"a\\'),
    ],
)
def test_text_malformed(oid, text):
    with pytest.raises(BAD):
        dec(oid, text, False)


@pytest.mark.parametrize(
    "oid,data",
    [
        (16, b""), (16, b"\x00\x00"), (21, b"\x00"), (23, b"\x00" * 5), (20, b"\x00" * 7),
        (26, b""), (700, b"\x00" * 8), (701, b"\x00" * 4), (1082, b"\x00"), (1083, b"\x00" * 12),
        (1266, b"\x00" * 8), (1114, b"\x00" * 4), (1186, b"\x00" * 12), (2950, b"\x00" * 15),
        (3802, b""), (3802, b"\x02{}"), (3802, b"\x01{"), (114, b"["),
        (1700, b"\x00"), (1700, numeric_bin([10000], 0, 0, 0)), (1700, numeric_bin([], 0, 0x1234, 0)),
        (1700, be("hhHH", -1, 0, 0, 0)), (1700, numeric_bin([1, 2], 0, 0, 0)[:-1]),
        (1700, numeric_bin([], 0, 0, 0x4000)),
        (1083, be("q", 86400 * 10**6)), (1083, be("q", -1)),
        (1082, be("i", 2932896 - 10957 + 1)), (1114, be("q", 2**62)),
        (1266, be("qi", 0, 86400)),
        (1186, be("qii", 0, 2**31 - 1, 2**31 - 1)),
        (1007, b""), (1007, be("iiI", 7, 0, 23)), (1007, be("iiI", -1, 0, 23)),
        (1007, be("iiIii", 1, 0, 23, 2, 1) + be("ii", 4, 7)),  # one element missing
        (1007, be("iiIii", 1, 0, 23, 1, 1) + be("ii", 4, 7) + b"x"),  # trailing byte
        (1007, be("iiIii", 1, 0, 23, 1, 1) + be("ii", 8, 7)),  # element overruns
        (1007, be("iiIii", 1, 0, 23, 1, 1) + be("ii", -2, 7)),
        (1007, be("iiIii", 1, 0, 23, -1, 1)),
        (1007, be("iiIiiii", 2, 0, 23, 2**30, 1, 2**30, 1) + be("ii", 4, 7)),
        (1007, be("iiIii", 1, 0, 1007, 1, 1) + be("i", 12) + be("iiI", 0, 0, 23)),  # array of arrays
        (1007, be("iiIii", 1, 0, 12345, 1, 1) + be("ii", 4, 7)),  # element type without binary codec
        (1007, be("iiIii", 1, 0, 25, 1, 1) + be("i", 3) + b"ab"),  # text element truncated
        (1007, be("iiIii", 1, 0, 21, 1, 1) + be("i", 4) + b"abcd"),  # int2 with 4 bytes
    ],
)
def test_binary_malformed(oid, data):
    with pytest.raises(BAD):
        dec(oid, data, True)


def test_no_binary_decoder_for_unknown_oid():
    with pytest.raises(BAD):
        dec(99999, b"x", True)


VALID_BINARY = [
    (16, b"\x01"), (21, be("h", 5)), (23, be("i", 5)), (20, be("q", 5)), (26, be("I", 5)),
    (700, be("f", 1.5)), (701, be("d", 1.5)), (1700, numeric_bin([12, 3450], 0, 0x4000, 3)),
    (25, "☃".encode()), (114, b"[1]"), (3802, b"\x01[1]"), (17, b"ab"), (1082, be("i", 5)),
    (1083, be("q", 5)), (1266, be("qi", 5, 60)), (1114, be("q", 5)), (1184, be("q", 5)),
    (1186, be("qii", 5, 6, 7)), (2950, U1.bytes),
    (1007, be("iiIiiii", 2, 1, 23, 2, 1, 1, 1) + be("ii", 4, 7) + be("i", -1)),
    (1009, be("iiIii", 1, 0, 25, 2, 1) + be("i", 1) + b"a" + be("i", 2) + b"bc"),
    (1231, be("iiIii", 1, 0, 1700, 1, 1) + be("i", 10) + numeric_bin([1], 0, 0, 0)),
]


@pytest.mark.parametrize("oid,data", VALID_BINARY, ids=[str(o) for o, _ in VALID_BINARY])
def test_binary_truncations_never_crash(oid, data):
    dec(oid, data, True)  # the untruncated vector is valid
    for cut in range(len(data)):
        try:
            dec(oid, data[:cut], True)
        except BAD:
            pass


ALL_OIDS = [16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 199, 700, 701, 705, 1000, 1001, 1002,
            1003, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1028, 1042, 1043, 1082, 1083,
            1114, 1115, 1182, 1183, 1184, 1185, 1186, 1187, 1231, 1266, 1270, 1700, 2950, 2951,
            3802, 3807]


def test_random_fuzz_never_crashes():
    rng = random.Random(1234)
    alphabet = b'{}",\\ NUL0123456789-:.+abcdefx[]=\x00\xff'
    for oid in ALL_OIDS:
        for _ in range(300):
            n = rng.randrange(0, 40)
            raw = bytes(rng.randrange(256) for _ in range(n))
            texty = bytes(rng.choice(alphabet) for _ in range(n))
            for data, binary in ((raw, True), (raw, False), (texty, False)):
                try:
                    dec(oid, data, binary)
                except BAD:
                    pass
                except RecursionError:  # pragma: no cover
                    raise


def test_mutated_arrays_never_crash():
    rng = random.Random(99)
    for oid, data in VALID_BINARY:
        for _ in range(300):
            b = bytearray(data)
            for _ in range(rng.randrange(1, 4)):
                if b:
                    b[rng.randrange(len(b))] = rng.randrange(256)
            try:
                dec(oid, bytes(b), True)
            except BAD:
                pass


# ------------------------------------------------------------------------------------------
# Encoding without a server


@pytest.mark.parametrize(
    "oid,value,expected",
    [
        (16, True, (b"\x01", 1)),
        (16, False, (b"\x00", 1)),
        (21, -32768, (be("h", -32768), 1)),
        (23, 2**31 - 1, (be("i", 2**31 - 1), 1)),
        (23, True, (be("i", 1), 1)),
        (20, -(2**63), (be("q", -(2**63)), 1)),
        (26, 2**32 - 1, (be("I", 2**32 - 1), 1)),
        (700, 1.5, (be("f", 1.5), 1)),
        (701, -0.0, (be("d", -0.0), 1)),
        (701, 2, (be("d", 2.0), 1)),
        (1700, Decimal("-1.50"), (b"-1.50", 0)),
        (1700, Decimal("sNaN"), (b"NaN", 0)),
        (1700, Decimal("-Infinity"), (b"-Infinity", 0)),
        (1700, math.nan, (b"NaN", 0)),
        (1700, 12, (b"12", 0)),
        (25, "☃", ("☃".encode(), 0)),
        (25, "", (b"", 0)),
        (17, bytearray(b"\x00\x01"), (b"\x00\x01", 1)),
        (17, memoryview(b"abc")[1:], (b"bc", 1)),
        (2950, U1, (U1.bytes, 1)),
        (2950, "urn:uuid:" + str(U1), (U1.bytes, 1)),
        (1082, dt.date(2000, 1, 2), (be("i", 1), 1)),
        (1082, dt.date(1999, 12, 31), (be("i", -1), 1)),
        (1083, dt.time(0, 0, 1), (be("q", 10**6), 1)),
        (1266, dt.time(0, tzinfo=tz(hours=1)), (be("qi", 0, -3600), 1)),
        (1114, dt.datetime(2000, 1, 1, 0, 0, 0, 1), (be("q", 1), 1)),
        (1184, dt.datetime(2000, 1, 1, 1, tzinfo=tz(hours=1)), (be("q", 0), 1)),
        (1184, dt.datetime.max.replace(tzinfo=UTC), (be("q", 2**63 - 1), 1)),
        (1186, dt.timedelta(days=-1, microseconds=1), (be("qii", 1, -1, 0), 1)),
        (114, {"a": 1}, (b'{"a": 1}', 0)),
        (3802, "[1]", (b"\x01[1]", 1)),
        (1007, [], (be("iiI", 0, 0, 23), 1)),
        (1007, [[], []], (be("iiI", 0, 0, 23), 1)),
        (1007, (1, None), (be("iiIii", 1, 1, 23, 2, 1) + be("ii", 4, 1) + be("i", -1), 1)),
        (1009, ["a"], (be("iiIii", 1, 0, 25, 1, 1) + be("i", 1) + b"a", 1)),
        (1231, [Decimal("1"), None], (b"{1,NULL}", 0)),
        (12345, "label", (b"label", 0)),
        (12345, 5, (b"5", 0)),
        (23, None, (None, 0)),
        (0, None, (None, 0)),
        (0, b"\x00", (b"\x00", 1)),
        (0, True, (b"t", 0)),
        (0, 10**30, (str(10**30).encode(), 0)),
        (0, math.inf, (b"Infinity", 0)),
        (0, 0.1, (b"0.1", 0)),
        (0, Decimal("1.10"), (b"1.10", 0)),
        (0, U1, (str(U1).encode(), 0)),
        (0, dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), (b"2024-01-02T03:04:05+00:00", 0)),
        (0, dt.timedelta(days=-1, seconds=5, microseconds=6), (b"-1 days 5 seconds 6 microseconds", 0)),
        (0, {"k": "v"}, (b'{"k": "v"}', 0)),
        (0, ["a", None, ["b c"]], (b'{a,NULL,{"b c"}}', 0)),
        (0, [{"k": 1}], (b'{"{\\"k\\": 1}"}', 0)),
    ],
)
def test_encode_vectors(oid, value, expected):
    assert enc(oid, value) == expected


class Color(enum.Enum):
    RED = "red"
    ONE = 1


def test_encode_enum_members():
    assert enc(54321, Color.RED) == (b"red", 0)
    assert enc(0, Color.RED) == (b"red", 0)
    assert enc(0, Color.ONE) == (b"1", 0)


@pytest.mark.parametrize(
    "oid,value,fragment",
    [
        (16, 1, "a bool is required for bool"),
        (16, "t", "a bool is required for bool"),
        (23, 1.0, "an int is required for int4"),
        (23, "1", "an int is required for int4"),
        (23, Decimal(1), "an int is required for int4"),
        (21, 32768, "value out of int2 range"),
        (21, -32769, "value out of int2 range"),
        (23, 2**31, "value out of int4 range"),
        (23, -(2**31) - 1, "value out of int4 range"),
        (20, 2**63, "value out of int8 range"),
        (26, -1, "value out of oid range"),
        (26, 2**32, "value out of oid range"),
        (700, 1e39, "value out of float4 range"),
        (701, 10**400, "value out of float8 range"),
        (701, "1.5", "a float is required for float8"),
        (1700, "1.5", "numeric"),
        (25, 5, "a str is required for text"),
        (25, b"x", "a str is required for text"),
        (25, "a\x00b", "a string containing NUL (\\x00) cannot be sent to PostgreSQL"),
        (1043, "\ud800", "UTF-8"),
        (0, "a\x00b", "a string containing NUL (\\x00) cannot be sent to PostgreSQL"),
        (0, ["a\x00b"], "NUL"),
        (114, "\x00", "NUL"),
        (3802, {1j}, "json"),
        (17, "abc", "bytes-like"),
        (2950, "not-a-uuid", "invalid UUID string"),
        (2950, 5, "uuid"),
        (1082, "2024-01-01", "datetime.date"),
        (1083, dt.datetime(2024, 1, 1), "datetime.time"),
        (1114, "2024-01-01", "datetime.datetime"),
        (1186, 5, "timedelta"),
        (1007, "{1,2}", "a list or tuple is required for int4[]"),
        (1007, 5, "list"),
        (1007, [1, "x"], "an int is required for int4"),
        (1007, [[1, 2], [3]], "rectangular"),
        (1007, [[1, 2], 3], "rectangular"),
        (1007, [1, [2]], "rectangular"),
        (1007, [[[[[[[1]]]]]]], "dimensions"),
        (1231, [[[[[[[1]]]]]]], "dimensions"),
        (1009, ["a", 1], "a str is required for text"),
        (12345, b"\xff", "UTF-8"),
    ],
)
def test_encode_errors_name_the_argument(oid, value, fragment):
    with pytest.raises(BAD) as info:
        enc(oid, value)
    msg = str(info.value)
    assert "$1" in msg, msg
    assert fragment in msg, msg


def test_long_repr_is_truncated():
    with pytest.raises(BAD) as info:
        enc(23, "x" * 10000)
    assert len(str(info.value)) < 200


def test_encode_large_values_grow_the_buffer():
    big = "é" * 100000
    data, fmt = enc(25, big)
    assert data == big.encode() and fmt == 0
    arr = list(range(10000)) + [None]
    data, fmt = enc(1016, arr)
    assert fmt == 1
    assert dec(1016, data, True) == arr
    blob = bytes(range(256)) * 1000
    assert dec(1001, enc(1001, [blob, blob])[0], True) == [blob, blob]


def test_typed_roundtrip_without_server():
    values = {
        16: [True, False],
        20: [0, -1, 2**63 - 1, -(2**63)],
        21: [-32768, 32767],
        23: [-(2**31), 2**31 - 1],
        26: [0, 2**32 - 1],
        701: [0.1, -1e-300, math.inf, -math.inf, 1e308],
        700: [0.5, -2.0, math.inf],
        25: ["", "☃ 𝄞", "a" * 1000],
        17: [b"", b"\x00" * 10],
        1082: [dt.date(1, 1, 2), dt.date(2024, 2, 29), dt.date(9999, 12, 30), dt.date.max, dt.date.min],
        1083: [dt.time(0), dt.time(23, 59, 59, 999999)],
        1266: [dt.time(1, tzinfo=tz(hours=14)), dt.time(1, tzinfo=tz(hours=-12, minutes=-30))],
        1114: [dt.datetime(1, 1, 1, 0, 0, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999998),
               dt.datetime(2024, 2, 29, 12), dt.datetime.max, dt.datetime.min],
        1184: [dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
        1186: [dt.timedelta(days=-999999999), dt.timedelta(days=999999999, seconds=86399),
               dt.timedelta(microseconds=-1)],
        2950: [U1, uuid.UUID(int=0)],
        114: [{"a": [1, "b", None]}],
        3802: [[1, {"x": "☃"}]],
        1007: [[1, None, 3], [[1, 2], [3, 4]], []],
        1009: [["a", None, ""], [["x"]]],
        1185: [[dt.datetime(2024, 1, 1, tzinfo=UTC), None]],
        3807: [[{"a": 1}, [1, 2]]],
        199: [[{"a": 1}, [1, 2], None]],
    }
    for oid, vals in values.items():
        for v in vals:
            data, fmt = enc(oid, v)
            assert same(dec(oid, data, fmt == 1), v), (oid, v)


def test_params_refcounts_do_not_leak():
    import sys

    v = "unique-string-for-refcount"
    before = sys.getrefcount(v)
    for _ in range(1000):
        enc(25, v)
        enc(0, [v, v])
        with pytest.raises(BAD):
            enc(1007, [1, v])
    assert sys.getrefcount(v) == before


def test_self_referencing_values_raise():
    loop = []
    loop.append(loop)
    with pytest.raises(BAD):
        enc(0, loop)
    with pytest.raises(BAD):
        enc(1007, loop)
    d = {}
    d["d"] = d
    with pytest.raises(BAD):
        enc(3802, d)


def test_int_enum_and_str_enum_untyped():
    class N(enum.IntEnum):
        TWO = 2

    class S(str, enum.Enum):
        A = "label"

    assert enc(0, N.TWO) == (b"2", 0)
    assert enc(23, N.TWO) == (be("i", 2), 1)
    assert enc(0, S.A) == (b"label", 0)
    assert enc(25, S.A) == (b"label", 0)
