"""(g) pgbench running ``SELECT 1`` prepared, at 1 and 20 clients: the C reference."""

from __future__ import annotations

import asyncio
import os
import re
import resource
from typing import Any

from . import util
from .drivers import Driver, NotAvailable
from .workloads import QUERIES, Case, Prepared, _held_case, _pool_case

SCRIPT = QUERIES / "select1.pgbench"


# agentdb's (b) case each pgbench run is compared with, run interleaved with it in the same
# case (trials A B A B), so that the machine's load drifts alike for both: 20 clients
# against the pool path with 100 tasks on a pool of 20; 1 client against one held
# connection.
AGENTDB_PEER = {20: _pool_case(100, 20), 1: _held_case(1)}


def _case(clients: int) -> Case:
    peer = AGENTDB_PEER[clients]
    peer_case, peer_tasks = peer.name, peer.tasks

    async def prepare(driver: Driver) -> Prepared:
        if driver.name != "pgbench":
            assert peer.prepare is not None
            return await peer.prepare(driver)
        tool = util.find_pg_tool("pgbench")
        if tool is None:
            raise NotAvailable("pgbench binary not found")
        threads = max(1, min(clients, os.cpu_count() or 1))

        async def trial(duration: float) -> dict[str, Any]:
            seconds = max(1, round(duration))
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = await asyncio.create_subprocess_exec(
                tool, "-n", "-M", "prepared", "-f", str(SCRIPT), "-c", str(clients),
                "-j", str(threads), "-T", str(seconds), driver.dsn,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            text = out.decode()
            if proc.returncode != 0:
                raise RuntimeError(f"pgbench exited {proc.returncode}: {err.decode()[-300:]}")
            tps = float(re.search(r"tps = ([\d.]+)", text).group(1))
            lat = re.search(r"latency average = ([\d.]+) ms", text)
            n = int(re.search(r"number of transactions actually processed: (\d+)", text).group(1))
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            nan = float("nan")
            return {"ops": n, "rows": n, "elapsed_s": seconds, "cpu_s": cpu, "qps": tps,
                    "rows_ps": tps, "p50_ms": nan, "p99_ms": nan,
                    "latency_avg_ms": float(lat.group(1)) if lat else nan,
                    "cpu_us_per_op": cpu / n * 1e6 if n else nan, "cpu_us_per_row": nan}

        async def close() -> None:
            return None

        return Prepared([], close, trial)

    return Case("g", f"g.pgbench.{clients}",
                f"pgbench -M prepared 'SELECT 1', {clients} client{'s' if clients > 1 else ''}"
                " (C reference; CPU = pgbench's own), interleaved with agentdb's "
                f"{peer_case} path",
                peer_tasks, prepare, drivers=("pgbench", "agentdb"),
                peer_labels={"agentdb": f"as {peer_case}"})



def cases_g() -> list[Case]:
    return [_case(1), _case(20)]
