"""Rows the garbage collector need not see, and the collector's state around a fetch.

A record of atoms (numbers, strings, dates, UUIDs) cannot be part of a reference cycle, so
it is left out of the collector's lists; one holding a container is tracked, so that a
cycle through it is still collected.  Large fetches hold off collections while they build
their rows and leave the collector as they found it.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref

import agentdb

ATOMS_SQL = """SELECT 1 AS i, 'x'::text AS t, 1.5::float8 AS f, now() AS ts, 2.5::numeric AS n,
                      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, NULL::int AS z"""


async def test_record_of_atoms_is_untracked(conn: agentdb.Connection) -> None:
    row = await conn.fetchrow(ATOMS_SQL)
    assert row is not None
    assert not gc.is_tracked(row)
    assert isinstance(row["u"], uuid.UUID)
    assert not gc.is_tracked(row["u"])
    assert row["u"] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    rows = await conn.fetch("SELECT g, g::text FROM generate_series(1, 100) g")
    assert not any(gc.is_tracked(r) for r in rows)


async def test_record_with_container_is_tracked(conn: agentdb.Connection) -> None:
    # Even a container with nothing in it: a cycle can be made through it later.
    for sql in ("SELECT 1 AS i, '{}'::jsonb", "SELECT '[]'::jsonb", "SELECT ARRAY[1, 2]"):
        row = await conn.fetchrow(sql)
        assert row is not None
        assert gc.is_tracked(row), sql


class _Marker:
    pass


async def test_cycle_through_a_record_is_collected(conn: agentdb.Connection) -> None:
    row = await conn.fetchrow("SELECT '{}'::jsonb AS j")
    assert row is not None
    marker = _Marker()
    gone = weakref.ref(marker)
    row["j"]["self"] = row  # record -> dict -> record
    row["j"]["marker"] = marker
    del row, marker
    await asyncio.sleep(0)  # the loop drops its last reference to the finished future
    gc.collect()
    assert gone() is None


async def test_fetch_leaves_the_collector_as_it_found_it(conn: agentdb.Connection) -> None:
    sql = "SELECT g, jsonb_build_object('g', g) FROM generate_series(1, 5000) g"
    assert gc.isenabled()
    rows = await conn.fetch(sql)
    assert gc.isenabled()
    assert len(rows) == 5000 and rows[-1][1] == {"g": 5000}
    gc.disable()
    try:
        rows = await conn.fetch(sql)
        assert not gc.isenabled()
    finally:
        gc.enable()
    # A failing row (a decode error half-way) re-enables it too.
    await conn.execute("CREATE TEMP TABLE gc_bad (v text)")
    await conn.execute("INSERT INTO gc_bad SELECT 'ok' FROM generate_series(1, 10)")
    await conn.execute("INSERT INTO gc_bad VALUES (E'\\\\xff')")
    rows = await conn.fetch("SELECT convert_to(v, 'UTF8')::bytea FROM gc_bad")
    assert gc.isenabled()
