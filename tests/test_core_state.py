"""What a connection says about itself while statements are pipelined: the transaction
status as of the statements issued so far, a completed connect future that cannot be
mistaken for another, and a client encoding that stays UTF-8."""

from __future__ import annotations

import asyncio

import pytest

import agentdb


async def test_in_transaction_as_soon_as_begin_is_issued(conn: agentdb.Connection) -> None:
    begin = conn.execute("BEGIN")
    assert conn.is_in_transaction()  # BEGIN is in flight, not yet answered
    work = conn.fetchval("SELECT 1")
    commit = conn.execute("COMMIT")
    assert not conn.is_in_transaction()  # ... and so is COMMIT
    assert await begin == "BEGIN" and await work == 1 and await commit == "COMMIT"
    assert not conn.is_in_transaction()


async def test_in_transaction_while_later_statements_are_in_flight(
    conn: agentdb.Connection,
) -> None:
    """BEGIN answered while another statement was already pipelined behind it: libpq
    says ACTIVE at BEGIN's sync, which must not be taken for the transaction status."""
    begin = conn.execute("BEGIN")
    slow = conn.execute("SELECT pg_sleep(0.3)")
    await begin
    assert conn.is_in_transaction()
    await slow
    assert conn.is_in_transaction()
    await conn.execute("ROLLBACK")
    assert not conn.is_in_transaction()


async def test_failed_statement_in_a_pipelined_transaction(conn: agentdb.Connection) -> None:
    begin = conn.execute("BEGIN")
    bad = conn.fetchval("SELECT 1/0")
    slow = conn.execute("SELECT pg_sleep(0.2)")
    await begin
    with pytest.raises(agentdb.DataError):
        await bad
    assert conn.is_in_transaction()  # aborted, still a transaction to end
    with pytest.raises(agentdb.InternalError):
        await slow  # in failed transaction
    assert conn.get_transaction_status() == "inerror"
    await conn.execute("ROLLBACK")
    assert not conn.is_in_transaction()


async def test_transaction_block_sees_a_pipelined_begin(conn: agentdb.Connection) -> None:
    begin = conn.execute("BEGIN")
    with pytest.raises(agentdb.InterfaceError, match="begun outside transaction"):
        await conn.transaction().start()
    await begin
    await conn.execute("ROLLBACK")


async def test_cancel_of_a_completed_query_never_closes_the_connection(pg_dsn: str) -> None:
    """A completed future's cancel() reports it to the connection (_future_abandoned);
    only the connection's own connect future may close it, and a later query future
    allocated where the connect future was must not be taken for it."""
    for _ in range(5):
        conn = await agentdb.connect(pg_dsn)
        try:
            for i in range(50):
                fut = conn.fetchval("SELECT $1::int", i)
                assert await fut == i
                assert fut.cancel() is False
                assert not conn.is_closed(), f"closed by cancel() of query {i}"
        finally:
            await conn.close()


async def test_connect_future_cancelled_as_it_completes_closes_the_connection(
    pg_dsn: str,
) -> None:
    """The case _future_abandoned is for: nobody will ever see this connection."""
    from agentdb import dsn as _dsn

    conn = agentdb.Connection()
    options = await _dsn.resolve_hosts(_dsn.parse(pg_dsn, {}))
    fut = conn._connect(list(options), list(options.values()), 10.0, None)
    assert await fut is conn
    assert fut.cancel() is False
    assert conn.is_closed()


async def test_set_client_encoding_is_refused_before_it_is_sent(
    conn: agentdb.Connection,
) -> None:
    for sql in ["SET client_encoding = 'LATIN1'", "SET NAMES 'SQL_ASCII'"]:
        with pytest.raises(agentdb.InterfaceError, match="client_encoding cannot be changed"):
            await conn.execute(sql)
    await conn.execute("SET client_encoding = 'UTF8'")  # changes nothing: allowed
    assert await conn.fetchval("SHOW client_encoding") == "UTF8"
    assert await conn.fetchval("SELECT 'é'") == "é"


async def test_encoding_changed_behind_our_back_closes_the_connection(
    conn: agentdb.Connection,
) -> None:
    with pytest.raises(agentdb.ConnectionLostError, match="client_encoding"):
        await conn.fetchval("SELECT set_config('client_encoding', 'LATIN1', false)")
    assert conn.is_closed()


async def test_statements_run_in_order_whatever_their_kind(conn: agentdb.Connection) -> None:
    """Classification changes nothing of the order: a session statement pipelined among
    others on one connection applies exactly between them."""
    results = await asyncio.gather(
        conn.fetchval("SHOW search_path"),
        conn.execute("SET search_path = pg_catalog"),
        conn.fetchval("SHOW search_path"),
        conn.execute("RESET search_path"),
        conn.fetchval("SHOW search_path"),
    )
    assert results == ['"$user", public', "SET", "pg_catalog", "RESET", '"$user", public']
