"""(h) slow and fast statements mixed on one pool (issue 10): 3 tasks loop a slow
statement (``SELECT pg_sleep(0.5)``) and 20 tasks loop ``SELECT 1``, all through one pool
of 5 connections, for the trial's duration.

What it measures is head-of-line blocking: a fast statement queued on a connection behind
a slow one waits for it. The result is the fast statements' tail (p99.9, max, how many
over 100 ms; ``timing.run_mixed_trial``). agentdb runs its pool shortcuts
(``pool.fetchval``, which pipeline statements onto connections other tasks are using) in
``h.mixed``, and ``async with pool.acquire()`` (an exclusive checkout) in
``h.mixed.acquire``, interleaved there with asyncpg's explicit ``pool.acquire()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .drivers import Driver, Op
from .timing import run_mixed_trial
from .workloads import Case, Prepared, _pool_closer

SLOW_TASKS = 3
FAST_TASKS = 20
POOL_SIZE = 5
FAST_SQL = "SELECT 1"

# (driver, pool, sql) -> the operation running sql through that pool
PoolOp = Callable[[Driver, Any, str], Op]


def _case(name: str, how: str, slow_s: float, pool_op: PoolOp,
          drivers: tuple[str, ...] | None = None,
          peer_labels: dict[str, str] | None = None) -> Case:
    slow_sql = f"SELECT pg_sleep({slow_s:g})"

    async def prepare(driver: Driver) -> Prepared:
        pool = await driver.create_pool(POOL_SIZE)
        fast = [pool_op(driver, pool, FAST_SQL)] * FAST_TASKS
        slow = [pool_op(driver, pool, slow_sql)] * SLOW_TASKS

        async def trial(duration: float) -> dict[str, Any]:
            return await run_mixed_trial(fast, slow, duration)

        return Prepared([], _pool_closer(driver, pool), trial)

    label = (f"{SLOW_TASKS} tasks loop '{slow_sql}' and {FAST_TASKS} loop '{FAST_SQL}', "
             f"{how}, one pool of {POOL_SIZE}; latencies of the fast ones")
    return Case("h", name, label, SLOW_TASKS + FAST_TASKS, prepare, drivers=drivers,
                peer_labels=peer_labels or {})


def cases_h(slow_s: float) -> list[Case]:
    """``slow_s``: the slow statement's pg_sleep, in seconds (``--mixed-sleep``)."""
    return [
        _case("h.mixed", "pool.fetchval", slow_s,
              lambda d, pool, sql: d.pool_fetchval_op(pool, sql),
              peer_labels={"psycopg": "AsyncConnectionPool.connection() + execute"}),
        _case("h.mixed.acquire", "async with pool.acquire() + fetchval", slow_s,
              lambda d, pool, sql: d.acquire_fetchval_op(pool, sql),
              drivers=("agentdb", "asyncpg")),
    ]
