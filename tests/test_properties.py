"""Property tests (hypothesis): values round-trip through the server unchanged.

Each test drives one connection on a private event loop (hypothesis calls the body many
times; a ``Runner`` keeps loop and connection across examples).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from faults.runner import Runner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import agentdb

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Db:
    def __init__(self, dsn: str) -> None:
        self.runner = Runner()
        self.conn = self.runner.run(agentdb.connect(dsn, timeout=10))  # a coroutine: fine

    def val(self, sql: str, *args: Any) -> Any:
        async def q() -> Any:
            return await self.conn.fetchval(sql, *args, timeout=30)

        return self.runner.run(q())

    def close(self) -> None:
        async def close() -> None:
            await self.conn.close()

        self.runner.run(close())
        self.runner.close()


@pytest.fixture(scope="module")
def db(pg_dsn: str) -> Iterator[Db]:
    d = Db(pg_dsn)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(autouse=True)
def _usable(db: Db) -> Iterator[None]:
    yield
    assert db.val("SELECT 1") == 1  # every example left the connection usable


@SETTINGS
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
@example(0)
@example(-(2**63))
@example(2**63 - 1)
def test_int8(db: Db, v: int) -> None:
    assert db.val("SELECT $1::int8", v) == v
    assert db.val("SELECT $1::numeric", v) == v


@SETTINGS
@given(
    st.integers(min_value=2**63, max_value=2**200)
    | st.integers(min_value=-(2**200), max_value=-(2**63) - 1)
)
def test_int8_out_of_range_is_a_data_error(db: Db, v: int) -> None:
    with pytest.raises(agentdb.DataError):
        db.val("SELECT $1::int8", v)


@SETTINGS
@given(st.floats(allow_nan=True, allow_infinity=True))
@example(float("inf"))
@example(float("-inf"))
@example(float("nan"))
@example(-0.0)
@example(5e-324)
def test_float8(db: Db, v: float) -> None:
    got = db.val("SELECT $1::float8", v)
    if math.isnan(v):
        assert math.isnan(got)
    else:
        assert got == v and math.copysign(1, got) == math.copysign(1, v)


@SETTINGS
@given(st.decimals(allow_nan=False, allow_infinity=False))
@example(Decimal("1e1000"))
@example(Decimal("-1e-1000"))
@example(Decimal("123456789012345678901234567890.123456789012345678901234567890"))
@example(Decimal("0E-20"))
def test_numeric(db: Db, v: Decimal) -> None:
    try:
        got = db.val("SELECT $1::numeric", v)
    except agentdb.DataError:  # beyond numeric's range (131072 digits / 16383 places)
        assert abs(v.adjusted()) > 16000
        return
    assert got == v


def test_numeric_specials(db: Db) -> None:
    assert db.val("SELECT $1::numeric", Decimal("NaN")).is_nan()
    assert db.val("SELECT 'NaN'::numeric").is_nan()
    assert db.val("SELECT 'Infinity'::numeric") == Decimal("Infinity")
    assert db.val("SELECT $1::numeric", Decimal("-Infinity")) == Decimal("-Infinity")


@SETTINGS
@given(st.dates())
@example(dt.date(2000, 2, 29))
@example(dt.date(2024, 2, 29))
@example(dt.date(1, 1, 1))
@example(dt.date(9999, 12, 31))
@example(dt.date(1900, 3, 1))
def test_date(db: Db, v: dt.date) -> None:
    assert db.val("SELECT $1::date", v) == v
    assert db.val("SELECT $1::date + 0", v) == v


@SETTINGS
@given(st.datetimes(timezones=st.just(dt.timezone.utc)))
def test_timestamptz(db: Db, v: dt.datetime) -> None:
    assert db.val("SELECT $1::timestamptz", v) == v


def test_dates_python_cannot_hold_fail_clearly(db: Db) -> None:
    for sql in ("SELECT '10000-01-01'::date", "SELECT '0044-03-15 BC'::date",
                "SELECT 'infinity'::date", "SELECT '-infinity'::timestamp"):
        try:
            got = db.val(sql)
        except (agentdb.Error, ValueError, OverflowError) as e:
            assert str(e)
        else:
            assert got is not None  # an explicit stand-in (e.g. date.max) is fine too


@SETTINGS
@given(st.text().filter(lambda s: "\x00" not in s))
@example("")
@example("\U0001f600 \u00e9\u0301 \u202e \ufeff")
@example("'; DROP TABLE x; --")
def test_text(db: Db, v: str) -> None:
    assert db.val("SELECT $1::text", v) == v
    assert db.val("SELECT length($1::text)", v) == len(v)


@SETTINGS
@given(st.text(min_size=1).map(lambda s: s[: len(s) // 2] + "\x00" + s[len(s) // 2 :]))
def test_nul_in_text_is_rejected_clearly(db: Db, v: str) -> None:
    with pytest.raises(agentdb.DataError):
        db.val("SELECT $1::text", v)


@SETTINGS
@given(st.binary(max_size=5000))
@example(b"")
@example(b"\x00" * 10)
def test_bytea(db: Db, v: bytes) -> None:
    assert db.val("SELECT $1::bytea", v) == v


@SETTINGS
@given(st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1) | st.none(), max_size=50))
@example([])
@example(list(range(20000)))
def test_int_arrays(db: Db, v: list[int | None]) -> None:
    assert db.val("SELECT $1::int4[]", v) == v


@SETTINGS
@given(
    st.integers(min_value=1, max_value=5).flatmap(
        lambda n: st.lists(st.lists(st.text(max_size=5).filter(lambda s: "\x00" not in s),
                                    min_size=n, max_size=n), min_size=1, max_size=5)
    )
)
def test_nested_text_arrays(db: Db, v: list[list[str]]) -> None:
    assert db.val("SELECT $1::text[]", v) == v


WRONG = [
    ("SELECT $1::int4", "abc"),
    ("SELECT $1::int4", object()),
    ("SELECT $1::int4", 2**40),
    ("SELECT $1::int2", 70000),
    ("SELECT $1::date", 5),
    ("SELECT $1::date", "not a date"),
    ("SELECT $1::timestamptz", dt.date(2020, 1, 1).isoformat() + "x"),
    ("SELECT $1::bytea", 3.5),
    ("SELECT $1::uuid", "nope"),
    ("SELECT $1::int4[]", [1, "x"]),
    ("SELECT $1::int4[]", [[1, 2], [3]]),
    ("SELECT $1::float8", "x"),
    ("SELECT $1::numeric", object()),
    ("SELECT $1::bool", "maybe"),
]


@pytest.mark.parametrize(("sql", "value"), WRONG, ids=[f"{s}-{type(v).__name__}" for s, v in WRONG])
def test_wrong_python_types_are_data_errors(db: Db, sql: str, value: Any) -> None:
    with pytest.raises(agentdb.DataError):
        db.val(sql, value)
