"""The soak (tests/test_adv_soak.py): 2,000 tasks
on a pool of 20 + 10 doing random queries, with random cancellations,
tiny timeouts and a backend killed every second.

Duration: ``AGENTDB_SOAK_SECONDS`` (default 20 in the suite, so CI stays fast; the
benchmark/soak command runs it for 10 minutes:
``AGENTDB_SOAK_SECONDS=600 python -X dev -m pytest tests/test_adv_soak.py -s``).
At the end: pool all idle, at most 30 backends, none idle in transaction, no unhandled
exception in the loop (the conftest guard), RSS flat.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
from typing import Any

import agentdb

from .checks import assert_backends, settle

__all__ = ["run_soak", "SECONDS"]

APP = f"adv_soak_{os.getpid()}"  # unique: concurrent runs share the server
SECONDS = float(os.environ.get("AGENTDB_SOAK_SECONDS", "20"))
CANCEL_RATE = float(os.environ.get("AGENTDB_SOAK_CANCEL_RATE", "0.1"))


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def run_soak(pg_dsn: str, admin_sql: Any, *, kills: bool, seconds: float = SECONDS) -> None:
    """The soak; ``kills``: terminate a random backend of the pool every second."""
    pool = await agentdb.create_pool(
        pg_dsn, pool_size=20, max_overflow=10, pool_timeout=10, application_name=APP,
        timeout=5,
    )
    deadline = time.monotonic() + seconds
    counts: dict[str, int] = {}
    unexpected: list[BaseException] = []
    rss: list[int] = []
    expected = (
        agentdb.OperationalError,  # the killed backends (ConnectionLostError, AdminShutdown)
        agentdb.InterfaceError,  # a statement queued on a connection that just died
        agentdb.PoolTimeout,
        TimeoutError,
        agentdb.DataError,
    )

    def note(k: str) -> None:
        counts[k] = counts.get(k, 0) + 1

    async def job(rng: random.Random) -> None:
        kind = rng.randrange(6)
        if kind == 0:
            await pool.fetchval("SELECT $1::int", rng.randrange(1000))
        elif kind == 1:
            await pool.fetch("SELECT g FROM generate_series(1, $1::int) g", rng.randrange(1, 200))
        elif kind == 2:
            await pool.fetchval("SELECT pg_sleep(0.01)", timeout=rng.choice((0.0005, 0.005, 1)))
        elif kind == 3:
            async with pool.acquire(timeout=10) as c, c.transaction():
                await c.execute("SELECT pg_sleep(0.005)")
                await c.fetchval("SELECT $1::text", "x" * rng.randrange(100))
        elif kind == 4:
            async with pool.acquire(timeout=10) as c:
                await asyncio.gather(*(c.fetchval("SELECT $1::int", i) for i in range(5)))
        else:
            await pool.fetchval("SELECT $1::int", "not an int")

    async def worker(i: int) -> None:
        rng = random.Random(i)
        while time.monotonic() < deadline:
            t = asyncio.ensure_future(job(rng))
            if rng.random() < CANCEL_RATE:  # a random cancellation
                await asyncio.sleep(rng.random() * 0.01)
                t.cancel()
            try:
                await t
                note("ok")
            except asyncio.CancelledError:
                if not t.cancelled():
                    raise
                note("cancelled")
            except expected as e:
                note(type(e).__name__)
            except BaseException as e:  # noqa: BLE001 - reported at the end
                unexpected.append(e)
                note("unexpected")

    async def killer() -> None:
        while kills and time.monotonic() < deadline:
            await asyncio.sleep(1)
            await asyncio.to_thread(
                admin_sql, pg_dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE application_name = '{APP}' ORDER BY random() LIMIT 1",
            )
            note("kills")

    async def sampler() -> None:
        while time.monotonic() < deadline:
            gc.collect()
            rss.append(_rss_kib())
            await asyncio.sleep(max(seconds / 10, 0.5))

    try:
        tasks = [asyncio.ensure_future(killer()), asyncio.ensure_future(sampler())]
        tasks += [asyncio.ensure_future(worker(i)) for i in range(2000)]
        _, pending = await asyncio.wait(tasks, timeout=seconds + 30)
        if pending:  # a hang: say where, then fail
            for lst in pool._connections()[1:]:  # what the stuck connections hold
                for conn in lst:
                    print("STUCK", conn._debug_state())
            stuck = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith("job")
                     and not t.done()]
            stacks = []
            for t in stuck[:3]:
                frames = t.get_stack()
                stacks.append(" <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in frames))
            for t in pending:
                t.cancel()
            await asyncio.wait(pending, timeout=10)
            raise AssertionError(
                f"{len(pending)} soak tasks still running {seconds + 30:.0f}s in; "
                f"{len(stuck)} jobs stuck, e.g. {stacks}; pool {pool.stats()}"
            )
        for t in tasks:
            t.result()
        print(f"soak {seconds:.0f}s (kills: {kills}): {counts}; RSS samples (KiB): {rss}; stats: "
              f"{ {k: pool.stats()[k] for k in ('size', 'opened', 'lost', 'timeouts')} }")
        assert not unexpected, [repr(e) for e in unexpected[:5]]
        assert counts.get("ok", 0) > 1000
        await settle(pool, timeout=15)
        assert pool.stats()["size"] <= 30
        await assert_backends(admin_sql, pg_dsn, APP, at_most=30, timeout=15)
        # after the warm-up (first samples), RSS stays flat-ish
        if len(rss) >= 4:
            warm = rss[len(rss) // 3]
            assert rss[-1] - warm < 64 * 1024, rss  # KiB
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close(timeout=10)
