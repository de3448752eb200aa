"""asyncpg's smaller Connection APIs: get_server_pid(), get_server_version(), query
loggers, termination listeners, fetchmany(), and connect(ssl=...) with an SSLContext."""

from __future__ import annotations

import asyncio
import glob
import os
import ssl
import tempfile
from typing import Any

import pytest

import agentdb
from agentdb.connection import LoggedQuery
from agentdb.sslcontext import ssl_keywords
from agentdb.types import ServerVersion, parse_server_version


async def settle() -> None:
    for _ in range(5):  # callbacks run soon after the statement, on the loop
        await asyncio.sleep(0)


# -- server pid and version --------------------------------------------------------


async def test_get_server_pid(conn: agentdb.Connection) -> None:
    assert conn.get_server_pid() == await conn.fetchval("SELECT pg_backend_pid()")


async def test_get_server_version(conn: agentdb.Connection) -> None:
    v = conn.get_server_version()
    assert isinstance(v, ServerVersion)
    num = int(await conn.fetchval("SHOW server_version_num"))
    assert (v.major, v.micro) == (num // 10000, num % 100)
    assert v.minor == 0 and v.releaselevel == "final" and v.serial == 0
    assert v >= (10, 0) and v[:2] == (num // 10000, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15.8 (Debian 15.8-1.pgdg120+1)", (15, 0, 8, "final", 0)),
        ("9.6.24", (9, 6, 24, "final", 0)),
        ("17beta2", (17, 0, 0, "beta", 2)),
        ("16rc1", (16, 0, 0, "rc", 1)),
        ("18devel", (18, 0, 0, "devel", 0)),
        ("PostgreSQL 12.3", (12, 0, 3, "final", 0)),
    ],
)
def test_server_version_parsing(text: str, expected: tuple[Any, ...]) -> None:
    assert parse_server_version(text) == expected


# -- query loggers -----------------------------------------------------------------


async def test_query_logger(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, password="not-shown-anywhere")
    try:
        seen: list[LoggedQuery] = []
        conn.add_query_logger(seen.append)
        assert await conn.fetchval("SELECT $1::int", 5, timeout=3) == 5
        await conn.execute("SELECT 1")
        await conn.fetch("SELECT 2")
        await conn.fetchrow("SELECT 3")
        await conn.executemany("SELECT $1::int", [(1,), (2,)])
        await conn.fetchmany("SELECT $1::int", [(1,)])
        with pytest.raises(agentdb.errors.lookup("22012")):
            await conn.fetchval("SELECT 1 / $1::int", 0)
        await settle()
        assert [q.query for q in seen] == [
            "SELECT $1::int",
            "SELECT 1",
            "SELECT 2",
            "SELECT 3",
            "SELECT $1::int",
            "SELECT $1::int",
            "SELECT 1 / $1::int",
        ]
        first = seen[0]
        assert first.args == (5,) and first.timeout == 3 and first.exception is None
        assert first.elapsed > 0
        assert seen[4].args == [(1,), (2,)]
        assert isinstance(seen[-1].exception, agentdb.errors.lookup("22012"))
        assert seen[-1].args == (0,)
        host, port = first.conn_addr
        assert host and port
        assert first.conn_params["user"] and "password" not in first.conn_params
        assert "not-shown-anywhere" not in repr(first)
    finally:
        await conn.close()


async def test_query_logger_coroutine_and_removal(conn: agentdb.Connection) -> None:
    got: list[str] = []

    async def log(q: LoggedQuery) -> None:
        got.append(q.query)

    def other(q: LoggedQuery) -> None:
        got.append("other:" + q.query)

    conn.add_query_logger(log)
    conn.add_query_logger(other)
    await conn.fetchval("SELECT 10")
    await settle()
    assert sorted(got) == ["SELECT 10", "other:SELECT 10"]
    conn.remove_query_logger(log)
    await conn.fetchval("SELECT 11")
    await settle()
    assert got[-1] == "other:SELECT 11" and "SELECT 11" not in got
    conn.remove_query_logger(other)
    conn.remove_query_logger(other)  # not there: nothing
    await conn.fetchval("SELECT 12")
    await settle()
    assert len(got) == 3
    # without loggers the core's methods are the connection's again
    assert "fetchval" not in vars(conn)
    with pytest.raises(TypeError):
        conn.add_query_logger("not callable")  # type: ignore[arg-type]


async def test_query_logger_sees_prepared_statements_and_cursors(
    conn: agentdb.Connection,
) -> None:
    got: list[str] = []
    conn.add_query_logger(lambda q: got.append(q.query))
    st = await conn.prepare("SELECT $1::int AS v")
    await st.fetchval(1)
    async with conn.transaction():
        [r async for r in conn.cursor("SELECT 1")]
    await settle()
    assert "SELECT $1::int AS v" in got
    assert any(q.startswith("DECLARE") for q in got)
    assert any(q.startswith("FETCH") for q in got)


async def test_a_failing_query_logger_does_not_fail_the_query(conn: agentdb.Connection) -> None:
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        conn.add_query_logger(lambda q: 1 / 0)
        assert await conn.fetchval("SELECT 1") == 1
        await settle()
    finally:
        loop.set_exception_handler(None)
    assert errors and isinstance(errors[0]["exception"], ZeroDivisionError)


async def test_query_loggers_are_their_borrowers(pg_dsn: str) -> None:
    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0)
    got: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda q: got.append(q.query))
            await conn.fetchval("SELECT 'mine'")
        async with pool.acquire() as conn2:
            assert conn2 is conn
            await conn2.fetchval("SELECT 'next borrower'")
            await settle()
            assert got == ["SELECT 'mine'"]
            assert "fetchval" not in vars(conn2)
    finally:
        await pool.close()


# -- termination listeners ---------------------------------------------------------


async def test_termination_listener_on_close(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    called: list[agentdb.Connection] = []
    done = asyncio.Event()

    async def coro_listener(c: agentdb.Connection) -> None:
        called.append(c)
        done.set()

    conn.add_termination_listener(called.append)
    conn.add_termination_listener(coro_listener)
    removed: list[Any] = []
    conn.add_termination_listener(removed.append)
    conn.remove_termination_listener(removed.append)
    await conn.close()
    await asyncio.wait_for(done.wait(), 5)
    await settle()
    assert called == [conn, conn] and removed == []
    await conn.close()  # closing again calls nobody again
    await settle()
    assert len(called) == 2


async def test_termination_listener_on_terminate_and_loss(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn)
    lost = asyncio.Event()
    conn.add_termination_listener(lambda c: lost.set())
    killer = await agentdb.connect(pg_dsn)
    try:
        await killer.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        with pytest.raises(agentdb.Error):
            await conn.fetchval("SELECT 1")  # the loss is noticed
        await asyncio.wait_for(lost.wait(), 5)
        assert conn.is_closed()
    finally:
        await killer.close()
        conn.terminate()
    conn2 = await agentdb.connect(pg_dsn)
    gone = asyncio.Event()
    conn2.add_termination_listener(lambda c: gone.set())
    conn2.terminate()
    await asyncio.wait_for(gone.wait(), 5)


async def test_termination_listeners_are_their_borrowers(pg_dsn: str) -> None:
    pool = await agentdb.create_pool(pg_dsn, pool_size=1, max_overflow=0)
    called: list[Any] = []
    async with pool.acquire() as conn:
        conn.add_termination_listener(called.append)
    await pool.close()
    await settle()
    assert called == []  # released: its listener went with its borrower
    with pytest.raises(TypeError):
        conn.add_termination_listener(42)  # type: ignore[arg-type]


# -- fetchmany ---------------------------------------------------------------------


async def test_fetchmany(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE fm (id serial PRIMARY KEY, v text UNIQUE)")
    rows = await conn.fetchmany(
        "INSERT INTO fm (v) VALUES ($1) RETURNING id, v", [("a",), ("b",), ("c",)]
    )
    assert [tuple(r) for r in rows] == [(1, "a"), (2, "b"), (3, "c")]
    # several rows per execution, in order
    rows = await conn.fetchmany("SELECT g FROM generate_series(1, $1::int) g", [(2,), (0,), (3,)])
    assert [r["g"] for r in rows] == [1, 2, 1, 2, 3]
    # statements without rows, and no argument sets
    assert await conn.fetchmany("UPDATE fm SET v = v WHERE id = $1", [(1,)]) == []
    assert await conn.fetchmany("SELECT $1::int", []) == []


async def test_fetchmany_is_atomic(conn: agentdb.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE fm_atomic (v text UNIQUE)")
    with pytest.raises(agentdb.IntegrityError):
        await conn.fetchmany(
            "INSERT INTO fm_atomic VALUES ($1) RETURNING v", [("a",), ("b",), ("a",)]
        )
    assert await conn.fetchval("SELECT count(*) FROM fm_atomic") == 0


async def test_fetchmany_bad_input(conn: agentdb.Connection) -> None:
    with pytest.raises(agentdb.InterfaceError, match="fetchmany: row 1 is a int"):
        await conn.fetchmany("SELECT $1::int", [(1,), 2])
    with pytest.raises(agentdb.DataError):
        await conn.fetchmany("SELECT $1::int", [("x",)])
    with pytest.raises(agentdb.InterfaceError, match="record_class"):
        await conn.fetchmany("SELECT $1::int", [(1,)], record_class=dict)
    assert await conn.fetchval("SELECT 1") == 1


async def test_pool_fetchmany(pg_dsn: str) -> None:
    async with agentdb.create_pool(pg_dsn, pool_size=1) as pool:
        rows = await pool.fetchmany("SELECT $1::int * 2 AS d", [(1,), (2,)])
        assert [r["d"] for r in rows] == [2, 4]


# -- ssl= --------------------------------------------------------------------------


def test_ssl_modes_and_bools() -> None:
    assert ssl_keywords("require", {}) == ({"sslmode": "require"}, None)
    assert ssl_keywords(False, {}) == ({"sslmode": "disable"}, None)
    with pytest.raises(agentdb.InterfaceError, match="not an sslmode"):
        ssl_keywords("required", {})
    with pytest.raises(TypeError, match="ssl must be"):
        ssl_keywords(1.5, {})
    # asyncpg's ssl=True is a default context: the system's CAs and the host name checked
    options, rootcert = ssl_keywords(True, {})
    try:
        assert options["sslmode"] == "verify-full" and options["sslrootcert"] == rootcert
    finally:
        if rootcert:
            os.unlink(rootcert)


def test_ssl_context_mapping() -> None:
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    assert ssl_keywords(unverified, {})[0]["sslmode"] == "require"
    assert ssl_keywords(unverified, {})[1] is None

    ca_only = ssl.create_default_context()
    ca_only.check_hostname = False
    ca_only.minimum_version = ssl.TLSVersion.TLSv1_3
    options, rootcert = ssl_keywords(ca_only, {})
    assert rootcert is not None
    try:
        assert options["sslmode"] == "verify-ca"
        assert options["ssl_min_protocol_version"] == "TLSv1.3"
        assert oct(os.stat(rootcert).st_mode & 0o777) == "0o600"
        with open(rootcert) as f:
            pem = f.read()
        assert pem.count("BEGIN CERTIFICATE") == len(ca_only.get_ca_certs())
    finally:
        os.unlink(rootcert)
    # the caller's own keywords win, and no file is written for a rootcert given
    options, rootcert = ssl_keywords(ca_only, {"sslrootcert": "/my/ca.pem", "sslmode": "x"})
    assert rootcert is None and "sslrootcert" not in options and "sslmode" not in options


def test_ssl_context_whose_cas_cannot_be_read() -> None:
    empty = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, holds no CA
    with pytest.raises(agentdb.InterfaceError, match="sslrootcert"):
        ssl_keywords(empty, {})
    # with sslrootcert given, the context's verification still applies
    options, rootcert = ssl_keywords(empty, {"sslrootcert": "system"})
    assert options["sslmode"] == "verify-full" and "sslrootcert" not in options
    assert rootcert is None


async def test_ssl_context_against_a_tls_server(tls_cluster: tuple[Any, str]) -> None:  # noqa: F811
    cluster, ca = tls_cluster
    base = f"hostaddr=127.0.0.1 port={cluster.port} user=postgres dbname=postgres host=localhost"
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "agentdb-ca-*")))
    verified = ssl.create_default_context(cafile=ca)
    conn = await agentdb.connect(base, ssl=verified, timeout=5)
    try:
        assert conn.ssl_in_use()
    finally:
        await conn.close()
    # the CA file written for libpq is gone once connected
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "agentdb-ca-*"))) == before
    # a pool over the same context
    async with agentdb.create_pool(base, ssl=verified, pool_size=1, timeout=5) as pool:
        assert await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    # the host name is checked as the context says
    with pytest.raises(agentdb.OperationalError, match="does not match host name"):
        await agentdb.connect(base.replace("host=localhost", "host=wrong.example"),
                              ssl=verified, timeout=5)
    # a context trusting another CA refuses the server: never a silent downgrade
    other = ssl.create_default_context(cafile=ca.replace("ca.crt", "other.crt"))
    with pytest.raises(agentdb.OperationalError, match="certificate verify failed"):
        await agentdb.connect(base, ssl=other, timeout=5)
    # an unverifying context: encrypted, unverified, as it asks
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    conn = await agentdb.connect(base, ssl=unverified, timeout=5)
    try:
        assert conn.ssl_in_use()
    finally:
        await conn.close()


async def test_query_logger_context_manager(conn: agentdb.Connection) -> None:
    got: list[str] = []
    with conn.query_logger(lambda q: got.append(q.query)):
        await conn.fetchval("SELECT 'inside'")
    await conn.fetchval("SELECT 'outside'")
    await settle()
    assert got == ["SELECT 'inside'"]


async def test_reload_schema_state(conn: agentdb.Connection) -> None:
    await conn.prepare("SELECT 1::int4")
    assert conn._statement_count() > 0 and conn._types
    await conn.reload_schema_state()
    assert conn._statement_count() == 0 and not conn._types
    assert await conn.fetchval("SELECT 1") == 1


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("record_class", dict, "final type"),
        ("max_cached_statement_lifetime", 0, "LRU"),
        ("max_cacheable_statement_size", 1024, "cacheable"),
        ("direct_tls", True, "sslnegotiation"),
        ("loop", object(), "running event loop"),
    ],
)
async def test_asyncpg_connect_arguments_not_taken(
    pg_dsn: str, name: str, value: Any, why: str
) -> None:
    with pytest.raises(TypeError, match=f"asyncpg's {name}=.*{why}"):
        await agentdb.connect(pg_dsn, **{name: value})


async def test_asyncpg_connect_arguments_that_mean_nothing(pg_dsn: str) -> None:
    conn = await agentdb.connect(pg_dsn, loop=None, record_class=agentdb.Record)
    await conn.close()


async def test_query_logger_keeps_the_order_of_calls(conn: agentdb.Connection) -> None:
    # copy_records_to_table queues its column probe, then holds its COPY's place: with a
    # logger the probe must still be queued at the call, not when awaited
    got: list[str] = []
    conn.add_query_logger(lambda q: got.append(q.query))
    await conn.execute("CREATE TEMP TABLE logged_copy (a int, b text)")
    assert await conn.copy_records_to_table("logged_copy", records=[(1, "x")], timeout=10) == (
        "COPY 1"
    )
    first = conn.fetchval("SELECT 1")  # not awaited yet: already queued
    second = conn.fetchval("SELECT 2")
    assert await second == 2 and await first == 1
    await settle()
    assert got[-2:] == ["SELECT 1", "SELECT 2"]
    # a statement cancelled by its timeout is logged with the error
    with pytest.raises(TimeoutError):
        await conn.execute("SELECT pg_sleep(5)", timeout=0.2)
    await settle()
    assert got[-1] == "SELECT pg_sleep(5)"
