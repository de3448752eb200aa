"""COPY with asyncpg's sources and sinks: async iterables of records, files, file objects,
async iterables of bytes, coroutine functions as output, ``where=`` and COPY's options;
streamed both ways, and a source that fails or a cancel leaves the connection usable."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import agentdb
from agentdb import copy_io


@pytest.fixture
async def table(conn: agentdb.Connection) -> str:
    await conn.execute("CREATE TEMP TABLE cv (id int PRIMARY KEY, name text)")
    return "cv"


async def arecords(n: int, start: int = 0) -> AsyncIterator[tuple[int, str]]:
    for i in range(start, start + n):
        if i % 500 == 0:
            await asyncio.sleep(0)
        yield (i, f"name {i}")


async def test_records_from_async_iterable(conn: agentdb.Connection, table: str) -> None:
    n = copy_io.RECORDS_BATCH * 3 + 7  # several batches and a short last one
    tag = await conn.copy_records_to_table(table, records=arecords(n))
    assert tag == f"COPY {n}"
    assert await conn.fetchval("SELECT count(*) FROM cv") == n
    assert await conn.fetchval("SELECT name FROM cv WHERE id = $1", n - 1) == f"name {n - 1}"


async def test_records_async_empty_and_text_format(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE cvi (id int, ip inet)")  # inet: text format
    assert await conn.copy_records_to_table("cvi", records=arecords(0)) == "COPY 0"

    async def rows() -> AsyncIterator[tuple[int, str]]:
        for i in range(2500):
            yield (i, f"10.0.{i // 256}.{i % 256}")

    assert await conn.copy_records_to_table("cvi", records=rows()) == "COPY 2500"
    assert await conn.fetchval("SELECT ip::text FROM cvi WHERE id = 2499") == "10.0.9.195/32"


async def test_records_where(conn: agentdb.Connection, table: str) -> None:
    tag = await conn.copy_records_to_table(table, records=[(1, "a"), (2, "b"), (3, "c")],
                                           where="id <> 2")
    assert tag == "COPY 2"
    tag = await conn.copy_records_to_table(table, records=arecords(10, start=10),
                                           where="id % 2 = 0")
    assert tag == "COPY 5"
    assert await conn.fetchval("SELECT array_agg(id ORDER BY id) FROM cv") == [
        1, 3, 10, 12, 14, 16, 18]


async def test_failing_record_source_rolls_back(conn: agentdb.Connection, table: str) -> None:
    async def broken() -> AsyncIterator[tuple[int, str]]:
        for i in range(copy_io.RECORDS_BATCH + 5):
            yield (i, "x")
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        await conn.copy_records_to_table(table, records=broken())
    assert await conn.fetchval("SELECT count(*) FROM cv") == 0  # nothing of it stayed
    assert await conn.fetchval("SELECT 1") == 1


async def test_bad_record_in_async_source_names_it(conn: agentdb.Connection, table: str) -> None:
    async def rows() -> AsyncIterator[tuple[Any, ...]]:
        yield (1, "a")
        yield ("not an int", "b")

    with pytest.raises(agentdb.DataError):
        await conn.copy_records_to_table(table, records=rows())
    assert await conn.fetchval("SELECT count(*) FROM cv") == 0


async def test_to_table_from_path(conn: agentdb.Connection, table: str, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    n = 30000  # over several CHUNK_SIZE reads
    path.write_text("".join(f"{i},row {i} {'x' * 20}\n" for i in range(n)))
    assert path.stat().st_size > 2 * copy_io.CHUNK_SIZE
    tag = await conn.copy_to_table(table, source=str(path), format="csv")
    assert tag == f"COPY {n}"
    assert await conn.fetchval("SELECT count(DISTINCT id) FROM cv") == n


async def test_to_table_from_file_objects(conn: agentdb.Connection, table: str) -> None:
    data = b"1\tone\n2\ttwo\n"
    assert await conn.copy_to_table(table, source=io.BytesIO(data)) == "COPY 2"

    class AsyncReader:
        def __init__(self, data: bytes) -> None:
            self.buf = io.BytesIO(data)

        async def read(self, n: int) -> bytes:
            await asyncio.sleep(0)
            return self.buf.read(n)

    tag = await conn.copy_to_table(table, source=AsyncReader(b"3|three\n"), delimiter="|")
    assert tag == "COPY 1"
    assert await conn.fetchval("SELECT name FROM cv WHERE id = 3") == "three"


async def test_to_table_reads_files_off_the_loop(
    conn: agentdb.Connection, table: str
) -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    class Spy(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            threads.append(threading.get_ident())
            return super().read(n)

    await conn.copy_to_table(table, source=Spy(b"5\tfive\n"))
    assert threads and loop_thread not in threads


async def test_to_table_from_async_iterable_of_bytes(
    conn: agentdb.Connection, table: str
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(2000):
            yield f"{i},\"q {i}\"\n".encode()

    tag = await conn.copy_to_table(table, source=chunks(), format="csv", where="id < 1000")
    assert tag == "COPY 1000"
    assert await conn.fetchval("SELECT name FROM cv WHERE id = 999") == "q 999"


async def test_to_table_errors(conn: agentdb.Connection, table: str) -> None:
    with pytest.raises(TypeError, match="source must be"):
        await conn.copy_to_table(table, source=12)
    with pytest.raises(TypeError, match="unexpected keyword argument 'force_quote'"):
        await conn.copy_to_table(table, source=b"", force_quote=True)

    async def bad_rows() -> AsyncIterator[bytes]:
        yield b"1\tok\n"
        yield b"oops\tbad\n"

    with pytest.raises(agentdb.DataError, match="invalid input syntax for type integer"):
        await conn.copy_to_table(table, source=bad_rows())
    assert await conn.fetchval("SELECT count(*) FROM cv") == 0
    assert await conn.fetchval("SELECT 1") == 1


async def test_to_table_cancelled_midway(conn: agentdb.Connection, table: str) -> None:
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"1\ta\n"
        gate.set()
        await asyncio.sleep(30)
        yield b"2\tb\n"

    task = asyncio.ensure_future(conn.copy_to_table(table, source=slow()))
    await gate.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await conn.fetchval("SELECT count(*) FROM cv") == 0
    assert await conn.fetchval("SELECT 1") == 1


async def test_to_table_timeout(conn: agentdb.Connection, table: str) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b"1\ta\n"
        await asyncio.sleep(30)
        yield b"2\tb\n"

    with pytest.raises(TimeoutError):
        await conn.copy_to_table(table, source=stalls(), timeout=0.3)
    assert await conn.fetchval("SELECT count(*) FROM cv") == 0


async def test_from_query_to_coroutine_function(conn: agentdb.Connection) -> None:
    got: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        await asyncio.sleep(0)
        got.append(chunk)

    tag = await conn.copy_from_query("SELECT g, 'v' || g FROM generate_series(1, 5000) g",
                                     output=sink, format="csv")
    assert tag == "COPY 5000"
    lines = b"".join(got).decode().splitlines()
    assert len(lines) == 5000 and lines[0] == "1,v1" and lines[-1] == "5000,v5000"


async def test_from_table_to_path_and_file(
    conn: agentdb.Connection, table: str, tmp_path: Path
) -> None:
    await conn.copy_records_to_table(table, records=[(1, "a,b"), (2, None)])
    path = tmp_path / "out.csv"
    tag = await conn.copy_from_table(table, output=path, format="csv", header=True)
    assert tag == "COPY 2"
    assert path.read_text() == 'id,name\n1,"a,b"\n2,\n'
    buf = io.BytesIO()
    tag = await conn.copy_from_table(table, output=buf, columns=["name"], null="NULL")
    assert tag == "COPY 2" and buf.getvalue() == b"a,b\nNULL\n"
    empty = tmp_path / "empty.txt"
    assert await conn.copy_from_query("SELECT 1 WHERE false", output=empty) == "COPY 0"
    assert empty.read_bytes() == b""


async def test_from_query_binary_and_options(conn: agentdb.Connection) -> None:
    data = await conn.copy_from_query("SELECT 1::int4", format="binary")
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    quoted = await conn.copy_from_query("SELECT 'a' AS x, 'b' AS y", format="csv",
                                        force_quote=["y"], delimiter=";")
    assert quoted == b'a;"b"\n'
    with pytest.raises(ValueError, match="format must be"):
        await conn.copy_from_query("SELECT 1", format="xml")
    with pytest.raises(TypeError, match="output must be"):
        await conn.copy_from_query("SELECT 1", output=42)


async def test_from_query_output_fails(conn: agentdb.Connection) -> None:
    async def sink(chunk: bytes) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await conn.copy_from_query("SELECT generate_series(1, 100000)", output=sink)
    assert await conn.fetchval("SELECT 2") == 2


async def test_pool_copy_shortcuts(pg_dsn: str, tmp_path: Path) -> None:
    async with await agentdb.create_pool(pg_dsn, pool_size=2) as pool:
        await pool.execute("DROP TABLE IF EXISTS cv_pool")
        await pool.execute("CREATE TABLE cv_pool (id int, name text)")
        try:
            assert await pool.copy_records_to_table(
                "cv_pool", records=arecords(1500)) == "COPY 1500"
            assert await pool.copy_to_table("cv_pool", source=io.BytesIO(b"-1\tx\n")) == "COPY 1"
            out = tmp_path / "pool.txt"
            assert await pool.copy_from_table("cv_pool", output=out) == "COPY 1501"
            assert len(out.read_bytes().splitlines()) == 1501
            got = await pool.copy_from_query("SELECT name FROM cv_pool WHERE id = -1")
            assert got == b"x\n"
        finally:
            await pool.execute("DROP TABLE cv_pool")
