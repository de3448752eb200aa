"""Workloads (a)-(d) of issue 4 as cases: what to set up, what each worker runs.

A case's ``prepare(driver)`` opens that driver's connections and returns its workers;
the runner interleaves drivers per trial. Set-up SQL runs through ``psql``, outside every
driver under test.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .drivers import Driver, Op

QUERIES = Path(__file__).resolve().parent / "queries"


@dataclass
class Prepared:
    ops: list[Op]
    close: Callable[[], Awaitable[None]]
    # A trial of its own (pgbench, HTTP load): duration -> the metrics of timing.run_trial.
    trial: Callable[[float], Awaitable[dict[str, Any]]] | None = None


@dataclass
class Case:
    workload: str  # "a" .. "h"
    name: str  # unique, e.g. "b.pool.100"
    label: str  # for the table
    tasks: int
    prepare: Callable[[Driver], Awaitable[Prepared]] | None = None
    setup_sql: str | None = None
    per_trial_sql: str | None = None
    teardown_sql: str | None = None
    rows: bool = False  # report rows/s
    cpu_per_row: bool = False
    peer_labels: dict[str, str] = field(default_factory=dict)  # driver -> what it ran
    drivers: tuple[str, ...] | None = None  # None: every selected driver


# -- helpers ---------------------------------------------------------------------------


async def _connections(driver: Driver, n: int, init_sql: str | None = None) -> list[Any]:
    conns = []
    try:
        for _ in range(n):
            conns.append(await driver.connect())
    except BaseException:
        for c in conns:
            await driver.close(c)
        raise
    return conns


def _closer(driver: Driver, conns: list[Any]) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        for c in conns:
            await driver.close(c)

    return close


def _pool_closer(driver: Driver, pool: Any) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        await driver.close_pool(pool)

    return close


# -- (a) MagicStack's pgbench query set ------------------------------------------------------


def _query_case(path: Path, workers: int) -> Case:
    spec = json.loads(path.read_text())
    kind = spec["kind"]
    name = path.stem.split("-", 1)[1]
    if kind in ("copy", "executemany"):
        records = [tuple(spec["record"])] * spec["count"]

    async def prepare(driver: Driver) -> Prepared:
        conns = await _connections(driver, workers)
        try:
            if kind == "fetch":
                ops = [driver.fetch_op(c, spec["query"], spec["args"]) for c in conns]
            elif kind == "executemany":
                ops = [driver.executemany_op(c, spec["query"], records) for c in conns]
            else:
                ops = [driver.copy_op(c, spec["table"], spec["columns"], records) for c in conns]
        except BaseException:
            await _closer(driver, conns)()
            raise
        return Prepared(ops, _closer(driver, conns))

    count = spec.get("count")
    label = spec["description"] + f", {workers} conns"
    return Case(
        workload="a",
        name=f"a.{name}",
        label=label,
        tasks=workers,
        prepare=prepare,
        setup_sql=spec.get("setup"),
        per_trial_sql=spec.get("per_trial"),
        teardown_sql=spec.get("teardown"),
        rows=kind == "fetch" or count is not None,
        # COPY/executemany "rows" are rows written: count them per operation.
    ), count


def cases_a(workers: int = 10) -> list[Case]:
    out = []
    for path in sorted(QUERIES.glob("*.json")):
        case, count = _query_case(path, workers)
        if count is not None:  # writes: rows written per op
            inner = case.prepare

            async def prepare(driver: Driver, inner=inner, count=count) -> Prepared:
                p = await inner(driver)
                p.ops = [_count_rows(op, count) for op in p.ops]
                return p

            case.prepare = prepare
        out.append(case)
    return out


def _count_rows(op: Op, count: int) -> Op:
    async def counted() -> int:
        await op()
        return count

    return counted


# -- (b) the pool path, held connections, several tasks on one connection -------------------


def _pool_case(tasks: int, size: int) -> Case:
    async def prepare(driver: Driver) -> Prepared:
        pool = await driver.create_pool(size)
        op = driver.pool_fetchval_op(pool, "SELECT 1")
        return Prepared([op] * tasks, _pool_closer(driver, pool))

    return Case(
        "b",
        f"b.pool.{tasks}",
        f"pool.fetchval('SELECT 1'), {tasks} task{'s' if tasks > 1 else ''}, pool of {size}",
        tasks,
        prepare,
        peer_labels={"psycopg": "AsyncConnectionPool.connection() + execute"},
    )


def _held_case(n: int) -> Case:
    async def prepare(driver: Driver) -> Prepared:
        conns = await _connections(driver, n)
        return Prepared([driver.fetchval_op(c, "SELECT 1") for c in conns], _closer(driver, conns))

    return Case(
        "b",
        f"b.held.{n}",
        f"fetchval('SELECT 1'), {n} task(s) on {n} held conn(s)",
        n,
        prepare,
    )


def _one_conn_case(tasks: int) -> Case:
    async def prepare(driver: Driver) -> Prepared:
        if driver.name == "asyncpg":
            # asyncpg refuses concurrent operations on one connection ("another operation
            # is in progress"): its closest equivalent is a pool of one.
            pool = await driver.create_pool(1)
            return Prepared([driver.pool_fetchval_op(pool, "SELECT 1")] * tasks,
                            _pool_closer(driver, pool))
        (conn,) = await _connections(driver, 1)
        return Prepared([driver.fetchval_op(conn, "SELECT 1")] * tasks, _closer(driver, [conn]))

    return Case(
        "b",
        f"b.oneconn.{tasks}",
        f"{tasks} tasks gather fetchval('SELECT 1') on one connection",
        tasks,
        prepare,
        peer_labels={"asyncpg": "pool of 1 (one connection refuses concurrency)",
                     "psycopg": "one AsyncConnection (its lock serializes)"},
    )


def cases_b(pool_tasks: tuple[int, ...] = (1, 10, 100, 1000), size: int = 20,
            oneconn_tasks: int = 100) -> list[Case]:
    return ([_pool_case(t, size) for t in pool_tasks]
            + [_held_case(1), _held_case(20), _one_conn_case(oneconn_tasks)])


# -- (c) point selects by primary key --------------------------------------------------------

POINT_ROWS = 10_000
POINT_SETUP = f"""
CREATE TABLE _bench_point (id int PRIMARY KEY, name text NOT NULL, score float8,
                           created timestamptz NOT NULL);
INSERT INTO _bench_point
  SELECT i, 'agent-' || i, i / 7.0, now() - i * interval '1 minute'
  FROM generate_series(1, {POINT_ROWS}) AS i;
ANALYZE _bench_point;
"""
POINT_SQL = "SELECT id, name, score, created FROM _bench_point WHERE id = $1"


def _point_args() -> tuple[int]:
    return (random.randint(1, POINT_ROWS),)


def cases_c(tasks: int = 20) -> list[Case]:
    async def held(driver: Driver) -> Prepared:
        conns = await _connections(driver, tasks)
        return Prepared([driver.fetchrow_op(c, POINT_SQL, _point_args) for c in conns],
                        _closer(driver, conns))

    async def pooled(driver: Driver) -> Prepared:
        pool = await driver.create_pool(20)
        op = driver.pool_fetchrow_op(pool, POINT_SQL, _point_args)
        return Prepared([op] * tasks, _pool_closer(driver, pool))

    return [
        Case("c", "c.pk.held", f"point select by pk, {tasks} tasks on {tasks} conns", tasks,
             held, setup_sql=POINT_SETUP, teardown_sql="DROP TABLE _bench_point;"),
        Case("c", "c.pk.pool", f"point select by pk, {tasks} tasks, pool.fetchrow, pool of 20",
             tasks, pooled, setup_sql=POINT_SETUP, teardown_sql="DROP TABLE _bench_point;",
             peer_labels={"psycopg": "AsyncConnectionPool.connection() + execute"}),
    ]


# -- (d) 10k rows of nine mixed types ----------------------------------------------------------

MIXED_ROWS = 10_000
MIXED_SETUP = f"""
CREATE TABLE _bench_mixed (i int, b bigint, f float8, t text, o bool, ts timestamptz,
                           n numeric, u uuid, j jsonb);
INSERT INTO _bench_mixed
  SELECT g, g::bigint * 1000003, g / 3.0, 'text value ' || g, g % 2 = 0,
         '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second',
         (g * 1.25)::numeric(12, 2), md5(g::text)::uuid,
         jsonb_build_object('id', g, 'name', 'agent ' || g, 'tags', jsonb_build_array('a', 'b'))
  FROM generate_series(1, {MIXED_ROWS}) AS g;
"""


def cases_d() -> list[Case]:
    label = ("10k rows x 9 types (int, bigint, float, text, bool, timestamptz, numeric, "
             "uuid, jsonb), 1 conn")

    async def prepare(driver: Driver) -> Prepared:
        conns = await _connections(driver, 1)
        return Prepared([driver.fetch_op(conns[0], "SELECT * FROM _bench_mixed")],
                        _closer(driver, conns))

    async def prepare_text(driver: Driver) -> Prepared:
        # The same fetch with jsonb left as text by every driver: asyncpg's default, and
        # agentdb's with decode_json=False.  Same work on both sides.
        if driver.name != "agentdb":
            return await prepare(driver)
        import agentdb

        conn = await agentdb.connect(driver.dsn, decode_json=False)
        return Prepared([driver.fetch_op(conn, "SELECT * FROM _bench_mixed")],
                        _closer(driver, [conn]))

    return [
        *cases_vector(),
        Case("d", "d.mixed10k", label, 1, prepare, setup_sql=MIXED_SETUP,
             teardown_sql="DROP TABLE _bench_mixed;", rows=True, cpu_per_row=True,
             peer_labels={"asyncpg": "jsonb returned as text (not parsed)"}),
        Case("d", "d.mixed10k.text", label + ", jsonb as text for all", 1, prepare_text,
             setup_sql=MIXED_SETUP, teardown_sql="DROP TABLE _bench_mixed;", rows=True,
             cpu_per_row=True,
             drivers=("agentdb", "asyncpg"),
             peer_labels={"agentdb": "decode_json=False"}),
    ]


VECTOR_ROWS, VECTOR_DIMS = 10_000, 1536
VECTOR_SETUP = f"""
CREATE EXTENSION IF NOT EXISTS vector;
DROP TABLE IF EXISTS _bench_vec;
CREATE TABLE _bench_vec AS
SELECT g AS id,
       ARRAY(SELECT random() FROM generate_series(1, {VECTOR_DIMS}) WHERE g > 0)
         ::vector({VECTOR_DIMS}) AS embedding
  FROM generate_series(1, {VECTOR_ROWS}) AS g;
"""


def cases_vector() -> list[Case]:
    """10k rows of 1536-dimension pgvector embeddings, one connection: agentdb's built-in
    codec (array('f')) against asyncpg with the pgvector package's codec (numpy arrays)."""

    async def prepare(driver: Driver) -> Prepared:
        conns = await _connections(driver, 1)
        if driver.name == "asyncpg":
            from pgvector.asyncpg import register_vector

            await register_vector(conns[0])
        return Prepared([driver.fetch_op(conns[0], "SELECT id, embedding FROM _bench_vec")],
                        _closer(driver, conns))

    return [
        Case("d", "d.vector10k", f"10k rows x vector({VECTOR_DIMS}), 1 conn", 1, prepare,
             setup_sql=VECTOR_SETUP, teardown_sql="DROP TABLE _bench_vec;", rows=True,
             cpu_per_row=True, drivers=("agentdb", "asyncpg"),
             peer_labels={"agentdb": "array('f') per row",
                          "asyncpg": "pgvector.asyncpg.register_vector: numpy per row"}),
    ]
