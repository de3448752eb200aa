"""Memory: RSS of a pool of 30 open connections, and RSS and gc object counts before and
after N queries through that pool. One child process per driver, so that each starts
from a clean interpreter: ``python -m bench.memory --driver agentdb --queries 1000000``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from . import util
from .drivers import available, make

TASKS = 100
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def settle() -> None:
    for _ in range(3):
        gc.collect()


def pool_size(name: str, pool: Any) -> int:
    if name == "agentdb":
        return int(pool.stats()["size"])
    if name == "asyncpg":
        return int(pool.get_size())
    return int(pool.get_stats()["pool_size"])


async def measure(name: str, dsn: str, queries: int) -> dict[str, Any]:
    driver = make(name, dsn)
    await (await driver.connect()).close()  # import everything the driver imports lazily
    settle()
    rss0 = rss_mb()
    pool = await driver.create_pool(30)
    settle()
    rss1 = rss_mb()
    opened = pool_size(name, pool)
    op = driver.pool_fetchval_op(pool, "SELECT 1")

    async def run(n: int) -> None:
        async def worker(k: int) -> None:
            for _ in range(k):
                await op()

        share, extra = divmod(n, TASKS)
        await asyncio.gather(*(worker(share + (i < extra)) for i in range(TASKS)))

    try:
        await run(min(10_000, max(queries // 10, 1000)))  # caches, free lists, statements
        settle()
        rss_before, objects_before = rss_mb(), len(gc.get_objects())
        t0 = time.perf_counter()
        await run(queries)
        seconds = time.perf_counter() - t0
        settle()
        rss_after, objects_after = rss_mb(), len(gc.get_objects())
    finally:
        await driver.close_pool(pool)
    return {"status": "ok", "pool30_rss_mb": rss1 - rss0, "pool_connections": opened,
            "queries": queries,
            "seconds": seconds, "qps": queries / seconds,
            "rss_before_mb": rss_before, "rss_after_mb": rss_after,
            "rss_growth_mb": rss_after - rss_before,
            "objects_before": objects_before, "objects_after": objects_after,
            "objects_growth": objects_after - objects_before}


def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Parent side: one child per selected driver; their results by driver name."""
    out: dict[str, Any] = {}
    for name in args.driver_list:
        reason = available(name)
        if reason:
            out[name] = {"status": f"n/a: {reason}"}
            continue
        cmd = util.python_module_cmd("bench.memory", "--driver", name, "--dsn", args.dsn,
                                     "--queries", str(args.mem_queries),
                                     *(["--uvloop"] if args.uvloop else []))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=util.child_env(),
                                  timeout=120 + args.mem_queries / 2000)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.strip()[-400:])
            out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        except Exception as e:  # noqa: BLE001 - reported, and fails the exit status
            out[name] = {"status": f"error: {type(e).__name__}: {e}"[:400]}
        m = out[name]
        line = m["status"] if "pool30_rss_mb" not in m else (
            f"pool of 30 {m['pool30_rss_mb']:.1f} MB; {m['queries']:,} queries: RSS "
            f"{m['rss_before_mb']:.1f} -> {m['rss_after_mb']:.1f} MB, objects "
            f"{m['objects_before']:,} -> {m['objects_after']:,}")
        print(f"  memory {name:<10} {line}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.memory")
    ap.add_argument("--driver", required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--uvloop", action="store_true")
    a = ap.parse_args()
    factory = None
    if a.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(measure(a.driver, a.dsn, a.queries))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
