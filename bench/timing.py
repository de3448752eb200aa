"""The timing engine: run a set of workers for a fixed duration and measure them.

Each worker is a coroutine function running one operation (see ``drivers.Op``). A trial
starts every worker at once; each repeats its operation until the deadline has passed,
recording each operation's latency (``time.perf_counter_ns`` appended to an ``array`` of
int64, so that recording costs next to nothing). Throughput is operations over the wall
time until the last worker stops; client CPU is ``time.process_time()`` over the trial.

``run_mixed_trial`` times two groups of workers side by side (workload h: fast statements
and slow ones on one pool) and reports each group's latencies apart, with the fast
group's tail.
"""

from __future__ import annotations

import asyncio
import bisect
import statistics
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .drivers import Op

# A fast statement slower than this waited behind something (workload h counts them).
TAIL_NS = 100_000_000


@dataclass
class _Group:
    """What one group of workers did: every latency (ns), operations, rows, and when its
    last worker stopped."""

    end_ns: int
    latencies: array[int] = field(default_factory=lambda: array("q"))
    ops: int = 0
    rows: int = 0


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def _time_groups(groups: Sequence[Sequence[Op]], duration: float
                       ) -> tuple[list[_Group], int, float]:
    """Start every worker of every group at once; each repeats its operation until the
    deadline has passed. Returns each group's record, the start (ns) and the CPU seconds."""
    clock = time.perf_counter_ns
    deadline = 0  # set just before the workers start

    async def worker(op: Op, group: _Group) -> None:
        record = group.latencies.append
        n = rows = 0
        while True:
            t0 = clock()
            rows += await op()
            t1 = clock()
            record(t1 - t0)
            n += 1
            if t1 >= deadline:
                break
        group.ops += n
        group.rows += rows
        group.end_ns = max(group.end_ns, t1)

    cpu0 = time.process_time()
    start = clock()
    deadline = start + int(duration * 1e9)
    records = [_Group(start) for _ in groups]
    await asyncio.gather(*(worker(op, g)
                           for ops, g in zip(groups, records, strict=True) for op in ops))
    return records, start, time.process_time() - cpu0


def _summary(group: _Group, latencies: list[int], start: int, cpu: float,
             cpu_ops: int) -> dict[str, Any]:
    """The standard metrics of one group (``latencies`` sorted); CPU is divided by
    ``cpu_ops`` operations."""
    n, rows = group.ops, group.rows
    elapsed = (group.end_ns - start) / 1e9
    return {
        "ops": n,
        "rows": rows,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "qps": n / elapsed,
        "rows_ps": rows / elapsed,
        "p50_ms": _percentile(latencies, 0.50) / 1e6,
        "p99_ms": _percentile(latencies, 0.99) / 1e6,
        "cpu_us_per_op": cpu / cpu_ops * 1e6 if cpu_ops else float("nan"),
        "cpu_us_per_row": cpu / rows * 1e6 if rows else float("nan"),
    }


async def run_trial(ops: Sequence[Op], duration: float) -> dict[str, Any]:
    (group,), start, cpu = await _time_groups([ops], duration)
    return _summary(group, sorted(group.latencies), start, cpu, group.ops)


async def run_mixed_trial(fast: Sequence[Op], slow: Sequence[Op], duration: float
                          ) -> dict[str, Any]:
    """Fast and slow workers side by side. The standard metrics are the fast statements'
    (throughput over the span until the last fast worker stopped; CPU per operation counts
    both groups), plus the fast ones' tail (p99.9, max, how many over ``TAIL_NS``) and the
    slow ones' count and p50."""
    (f, s), start, cpu = await _time_groups([fast, slow], duration)
    latencies = sorted(f.latencies)
    out = _summary(f, latencies, start, cpu, f.ops + s.ops)
    out.update({
        "p999_ms": _percentile(latencies, 0.999) / 1e6,
        "max_ms": latencies[-1] / 1e6 if latencies else float("nan"),
        "over_100ms": len(latencies) - bisect.bisect_right(latencies, TAIL_NS),
        "slow_ops": s.ops,
        "slow_p50_ms": _percentile(sorted(s.latencies), 0.50) / 1e6,
    })
    return out


METRICS = ("ops", "qps", "rows_ps", "p50_ms", "p99_ms", "cpu_us_per_op", "cpu_us_per_row")
# Only in the trials of run_mixed_trial (workload h).
TAIL_METRICS = ("p999_ms", "max_ms", "over_100ms", "slow_ops", "slow_p50_ms")


def medians(trials: list[dict[str, Any]]) -> dict[str, float]:
    """The median of each metric across trials (each metric on its own); the tail metrics
    only when the trials have them."""
    out: dict[str, float] = {}
    for key in METRICS + TAIL_METRICS:
        values = [t[key] for t in trials if key in t and t[key] == t[key]]  # drop NaN
        if values or key in METRICS:
            out[key] = statistics.median(values) if values else float("nan")
    return out
