"""Soak: 2,000 tasks on a pool of 20 + 10 doing random queries, with random cancellations,
tiny timeouts and a backend killed every second (the implementation: tests/faults/soak.py).

Duration: ``AGENTDB_SOAK_SECONDS`` (default 20 in the suite, so CI stays fast). The
benchmark/soak command runs it for 10 minutes:

    AGENTDB_SOAK_SECONDS=600 python -X dev -m pytest tests/test_adv_soak.py -s [--uvloop]

At the end: pool all idle, at most 30 backends, none idle in transaction, no unhandled
exception in the loop (the conftest guard), RSS flat.
"""

from __future__ import annotations

from typing import Any

from faults.soak import run_soak


async def test_soak_with_backend_kills(pg_dsn: str, admin_sql: Any) -> None:
    await run_soak(pg_dsn, admin_sql, kills=True)
