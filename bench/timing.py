"""The timing engine: run a set of workers for a fixed duration and measure them.

Each worker is a coroutine function running one operation (see ``drivers.Op``). A trial
starts every worker at once; each repeats its operation until the deadline has passed,
recording each operation's latency. Throughput is operations over the wall time until
the last worker stops; client CPU is ``time.process_time()`` over the same span.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from .drivers import Op


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def run_trial(ops: Sequence[Op], duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    record = latencies.append
    clock = time.perf_counter
    deadline = 0.0  # set just before the workers start

    async def worker(op: Op) -> tuple[int, int]:
        n = rows = 0
        while True:
            t0 = clock()
            rows += await op()
            t1 = clock()
            record(t1 - t0)
            n += 1
            if t1 >= deadline:
                return n, rows

    cpu0 = time.process_time()
    start = clock()
    deadline = start + duration
    results = await asyncio.gather(*(worker(op) for op in ops))
    elapsed = clock() - start
    cpu = time.process_time() - cpu0
    n = sum(r[0] for r in results)
    rows = sum(r[1] for r in results)
    latencies.sort()
    return {
        "ops": n,
        "rows": rows,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "qps": n / elapsed,
        "rows_ps": rows / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1e3,
        "p99_ms": _percentile(latencies, 0.99) * 1e3,
        "cpu_us_per_op": cpu / n * 1e6 if n else float("nan"),
        "cpu_us_per_row": cpu / rows * 1e6 if rows else float("nan"),
    }


METRICS = ("qps", "rows_ps", "p50_ms", "p99_ms", "cpu_us_per_op", "cpu_us_per_row")


def medians(trials: list[dict[str, Any]]) -> dict[str, float]:
    """The median of each metric across trials (each metric on its own)."""
    out: dict[str, float] = {}
    for key in METRICS:
        values = [t[key] for t in trials if t.get(key) == t.get(key)]  # drop NaN
        out[key] = statistics.median(values) if values else float("nan")
    return out
