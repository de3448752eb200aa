"""pgvector's vector and halfvec: the built-in codec, both ways, against the real extension.

The extension lives in a database of its own (``<suite db>_vector``), so the rest of the
suite runs on a database without it. .ci/setup.sh builds pgvector when it is missing.
"""

from __future__ import annotations

import array
import math
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

import agentdb
from agentdb.testing.cluster import dsn_with_dbname


@pytest.fixture(scope="module")
def vector_dsn(pg_dsn: str, pg_admin_dsn: str, admin_sql: Callable[..., Any]) -> str:
    dbname = pg_dsn.rsplit("/", 1)[1].split("?")[0] + "_vector"
    if not admin_sql(pg_admin_dsn, f"SELECT 1 FROM pg_database WHERE datname = '{dbname}'"):
        admin_sql(pg_admin_dsn, f"CREATE DATABASE {dbname}")
    dsn = dsn_with_dbname(pg_admin_dsn, dbname)
    admin_sql(dsn, "CREATE EXTENSION IF NOT EXISTS vector")
    return dsn


@pytest.fixture
async def vconn(vector_dsn: str) -> AsyncIterator[agentdb.Connection]:
    c = await agentdb.connect(vector_dsn, timeout=10)
    try:
        yield c
    finally:
        await c.close()


def f32(values: list[float]) -> list[float]:
    """Each value as float32 holds it."""
    return list(array.array("f", values))


async def test_decode_is_array_f_and_null_is_none(vconn: agentdb.Connection) -> None:
    row = await vconn.fetchrow(
        "SELECT '[1,2.5,-3e-05]'::vector AS v, '[1,0.5]'::halfvec AS h, NULL::vector AS n"
    )
    assert row is not None
    assert isinstance(row["v"], array.array) and row["v"].typecode == "f"
    assert list(row["v"]) == f32([1.0, 2.5, -3e-05])
    assert isinstance(row["h"], array.array) and list(row["h"]) == [1.0, 0.5]
    assert row["n"] is None


@pytest.mark.parametrize(
    "value",
    [
        [1.0, -2.5, 3.25],
        (1, 2, 3),
        array.array("f", [0.1, 0.2, 0.3]),
        array.array("d", [0.1, 0.2, 0.3]),
        np.array([0.1, 0.2, 0.3], dtype=np.float32),
        np.array([0.1, 0.2, 0.3], dtype=np.float64),
        np.array([1, 2, 3], dtype=np.int64),  # not a float buffer: item by item
        np.arange(6, dtype=np.float32)[::2],  # not contiguous: item by item
        np.array([0.5, 1.5], dtype=">f4"),  # big-endian: item by item
        memoryview(array.array("f", [4.0, 5.0])),
    ],
    ids=["list", "tuple-of-int", "array-f", "array-d", "np-f32", "np-f64", "np-int", "np-strided",
         "np-bigendian", "memoryview"],
)
async def test_round_trip_parameter_kinds(vconn: agentdb.Connection, value: Any) -> None:
    expected = f32([float(x) for x in value])
    got = await vconn.fetchval("SELECT $1::vector", value)
    assert list(got) == expected
    # the server read what we meant: its own text of the value
    text = await vconn.fetchval("SELECT $1::vector::text", value)
    assert [float(x) for x in text.strip("[]").split(",")] == pytest.approx(expected)


async def test_null_parameter_and_table_round_trip(vconn: agentdb.Connection) -> None:
    await vconn.execute("CREATE TEMP TABLE items (id int, emb vector(3), h halfvec(3))")
    await vconn.executemany(
        "INSERT INTO items VALUES ($1, $2, $3)",
        [(1, [1, 2, 3], [1, 2, 3]), (2, None, None)],
    )
    rows = await vconn.fetch("SELECT id, emb, h FROM items ORDER BY id")
    assert list(rows[0]["emb"]) == [1.0, 2.0, 3.0] and list(rows[0]["h"]) == [1.0, 2.0, 3.0]
    assert rows[1]["emb"] is None and rows[1]["h"] is None
    # a nearest-neighbour query with the vector as a parameter
    nearest = await vconn.fetchval(
        "SELECT id FROM items WHERE emb IS NOT NULL ORDER BY emb <-> $1 LIMIT 1", [1, 2, 4]
    )
    assert nearest == 1


@pytest.mark.parametrize("typ", ["vector", "halfvec"])
async def test_dimensions_up_to_16000(vconn: agentdb.Connection, typ: str) -> None:
    rnd = random.Random(14)
    value = [rnd.uniform(-100, 100) for _ in range(16000)]
    got = await vconn.fetchval(f"SELECT $1::{typ}", value)
    assert len(got) == 16000
    # what the server stored equals what it parses from the value's text
    same = await vconn.fetchval(
        f"SELECT $1::{typ} = $2::text::{typ}", value, "[" + ",".join(map(repr, value)) + "]"
    )
    assert same is True
    assert await vconn.fetchval(f"SELECT vector_dims($1::{typ})", [1.0]) == 1


@pytest.mark.parametrize("typ", ["vector", "halfvec"])
async def test_dimension_limits_refused_as_the_server_refuses_them(
    vconn: agentdb.Connection, typ: str
) -> None:
    with pytest.raises(agentdb.DataError, match=r"\$1.*at least 1 dimension"):
        await vconn.fetchval(f"SELECT $1::{typ}", [])
    with pytest.raises(agentdb.DataError, match=r"\$1.*more than 16000 dimensions"):
        await vconn.fetchval(f"SELECT $1::{typ}", [0.0] * 16001)
    # the server says the same of its own input
    with pytest.raises(agentdb.DataError, match="at least 1 dimension"):
        await vconn.fetchval(f"SELECT '[]'::{typ}")
    # (the server's SQLSTATE is 54000, a limit; ours names the argument, a DataError)
    with pytest.raises(agentdb.errors.ProgramLimitExceeded, match="more than 16000 dimensions"):
        await vconn.fetchval(f"SELECT array_fill(0, ARRAY[16001])::{typ}")
    assert await vconn.fetchval("SELECT 1") == 1  # the connection is fine after


@pytest.mark.parametrize("typ", ["vector", "halfvec"])
@pytest.mark.parametrize(
    ("bad", "why"),
    [(math.nan, "NaN not allowed"), (math.inf, "infinite value not allowed"),
     (-math.inf, "infinite value not allowed")],
)
async def test_nan_and_infinity_refused(
    vconn: agentdb.Connection, typ: str, bad: float, why: str
) -> None:
    for value in ([1.0, bad], array.array("d", [bad]), np.array([0.0, bad], dtype=np.float32)):
        with pytest.raises(agentdb.DataError, match=rf"query argument \$2.*{why} in {typ}"):
            await vconn.fetchval(f"SELECT $1::int, $2::{typ}", 1, value)
    # the server refuses them in its own input too
    with pytest.raises(agentdb.DataError, match=why):
        await vconn.fetchval(f"SELECT ARRAY[1, $1::float8]::{typ}", bad)


async def test_out_of_range_refused(vconn: agentdb.Connection) -> None:
    with pytest.raises(agentdb.DataError, match=r"\$1.*out of range for type vector"):
        await vconn.fetchval("SELECT $1::vector", [1e39])
    with pytest.raises(agentdb.DataError, match=r"\$1.*out of range for type halfvec"):
        await vconn.fetchval("SELECT $1::halfvec", [70000.0])
    with pytest.raises(agentdb.DataError, match=r"\$1.*out of range"):
        await vconn.fetchval("SELECT $1::vector", [10**400])
    assert list(await vconn.fetchval("SELECT $1::halfvec", [65504.0])) == [65504.0]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (["x"], "element 0 is str, not a float"),
        ([1.0, None], "element 1 is NoneType, not a float"),
        ([1.0, [2.0]], "element 1 is list, not a float"),
        ("[1,2]", "required for vector, not str"),
        (b"\x00\x00\x80?", "required for vector, not bytes"),
        (42, "a list of floats, array\\('f'\\) or a numpy array is required"),
        ({"a": 1.0}, "element 0 is str, not a float"),
    ],
)
async def test_wrong_types_name_the_argument(
    vconn: agentdb.Connection, value: Any, why: str
) -> None:
    with pytest.raises(agentdb.DataError, match=rf"query argument \$1: .*{why}"):
        await vconn.fetchval("SELECT $1::vector", value)
    assert await vconn.fetchval("SELECT 1") == 1


async def test_halfvec_rounds_as_the_server_does(vconn: agentdb.Connection) -> None:
    rnd = random.Random(7)
    values = [0.1, 3.3, 1e-6, 6e-8, 2.9e-8, -65504.0, 65519.0, 1.0009765625, 1.00048828125]
    values += [rnd.uniform(-10, 10) * 10 ** rnd.randint(-7, 4) for _ in range(500)]
    values = [v for v in values if abs(v) < 65504]
    same = await vconn.fetchval(
        "SELECT $1::halfvec = $2::text::halfvec", values,
        "[" + ",".join(map(repr, values)) + "]",
    )
    assert same is True


async def test_text_results_decode_too(vconn: agentdb.Connection) -> None:
    # inet has no binary decoder: the whole row comes in text format
    row = await vconn.fetchrow("SELECT '[1,2.5]'::vector AS v, '[3]'::halfvec AS h, "
                               "'10.0.0.1'::inet AS ip")
    assert row is not None
    assert isinstance(row["v"], array.array) and list(row["v"]) == [1.0, 2.5]
    assert list(row["h"]) == [3.0] and row["ip"] == "10.0.0.1"


async def test_extension_created_after_connect(
    pg_dsn: str, pg_admin_dsn: str, admin_sql: Callable[..., Any]
) -> None:
    dbname = pg_dsn.rsplit("/", 1)[1].split("?")[0] + "_vector_late"
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {dbname}")
    admin_sql(pg_admin_dsn, f"CREATE DATABASE {dbname}")
    try:
        c = await agentdb.connect(dsn_with_dbname(pg_admin_dsn, dbname))
        try:
            await c.execute("CREATE EXTENSION vector")
            sql = "SELECT '[1,2]'::vector"
            assert await c.fetchval(sql) == "[1,2]"  # unknown at connect: its text
            await c.reload_schema_state()
            assert list(await c.fetchval(sql)) == [1.0, 2.0]  # the cached statement too
            assert list(await c.fetchval("SELECT $1::vector", [3, 4])) == [3.0, 4.0]
        finally:
            await c.close()
    finally:
        admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {dbname}")


async def test_pool_connections_have_the_codec(vector_dsn: str) -> None:
    async with await agentdb.create_pool(vector_dsn, pool_size=2, min_size=1) as pool:
        assert list(await pool.fetchval("SELECT $1::vector", [1, 2])) == [1.0, 2.0]
        async with pool.acquire() as c:
            await c.execute("SET search_path = pg_catalog")  # a reset follows the release
            assert list(await c.fetchval("SELECT $1::public.vector", [5])) == [5.0]
        async with pool.acquire() as c:
            assert list(await c.fetchval("SELECT '[7]'::vector")) == [7.0]


async def test_a_list_changed_while_encoded(vconn: agentdb.Connection) -> None:
    values: list[Any] = [1.0, 2.0, 3.0]

    class Shrinking:
        def __float__(self) -> float:
            values.clear()
            return 9.0

    values.insert(1, Shrinking())
    got = await vconn.fetchval("SELECT $1::vector", values)
    assert list(got) == [1.0, 9.0, 2.0, 3.0]  # the snapshot taken before any call


async def test_builtin_type_codec_overrides_the_vector_codec(vconn: agentdb.Connection) -> None:
    await vconn.set_builtin_type_codec("vector", codec_name="text")
    assert await vconn.fetchval("SELECT '[1,2]'::vector") == "[1,2]"
    assert await vconn.fetchval("SELECT vector_dims($1::vector)", "[1,2,3]") == 3
    await vconn.reset_type_codec("vector")
    assert list(await vconn.fetchval("SELECT '[1,2]'::vector")) == [1.0, 2.0]


async def test_copy_records_with_vectors(vconn: agentdb.Connection) -> None:
    await vconn.execute("CREATE TEMP TABLE emb (id int, e vector(3), h halfvec(2))")
    records = [(1, [1, 2, 3], array.array("f", [0.5, 1])), (2, np.array([4, 5, 6.5]), None)]
    assert await vconn.copy_records_to_table("emb", records=records) == "COPY 2"

    async def more() -> AsyncIterator[tuple[int, Any, Any]]:
        for i in range(3, 2503):
            yield (i, [i, 0, 1], [1, 2])

    assert await vconn.copy_records_to_table("emb", records=more()) == "COPY 2500"
    rows = await vconn.fetch("SELECT id, e, h FROM emb WHERE id IN (1, 2, 2502) ORDER BY id")
    assert [list(r["e"]) for r in rows] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5], [2502.0, 0.0, 1.0]]
    assert list(rows[0]["h"]) == [0.5, 1.0] and rows[1]["h"] is None
    with pytest.raises(agentdb.DataError, match="NaN not allowed in vector"):
        await vconn.copy_records_to_table("emb", records=[(9, [math.nan, 0, 0], None)])
