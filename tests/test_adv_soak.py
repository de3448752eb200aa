"""Soak: 2,000 tasks on a pool of 20 + 10 doing random queries, with random cancellations
and tiny timeouts (the implementation: tests/faults/soak.py).

Duration: ``AGENTDB_SOAK_SECONDS`` (default 20 in the suite, so CI stays fast). The
benchmark/soak command runs it for 10 minutes:

    AGENTDB_SOAK_SECONDS=600 python -X dev -m pytest tests/test_adv_soak.py \
        tests/pending/test_soak_with_kills.py -s [--uvloop]

At the end: pool all idle, at most 30 backends, none idle in transaction, no unhandled
exception in the loop (the conftest guard), RSS flat.

The issue's soak also kills a backend every second: that variant hangs on uvloop (tasks
whose statements never complete; a core bug) and lives in
tests/pending/test_soak_with_kills.py until the core is fixed. It passes on asyncio.
"""

from __future__ import annotations

from typing import Any

from faults.soak import run_soak


async def test_soak_cancellations_and_tiny_timeouts(pg_dsn: str, admin_sql: Any) -> None:
    await run_soak(pg_dsn, admin_sql, kills=False)
