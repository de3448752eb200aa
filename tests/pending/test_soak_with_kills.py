"""The issue's full soak: 2,000 tasks on a pool of 20 + 10, random queries, random
cancellations, tiny timeouts and a backend killed every second (tests/faults/soak.py).

On uvloop (``--uvloop``) it failed in 4 runs out of 4 (20 s each); on asyncio in 1 run
out of 4 (same symptom), and a passing asyncio run shows ~400 PoolTimeouts (tasks
waiting > 10 s for a connection: connections stuck in shared/resetting for a while):
3 to 129 tasks are still waiting 30 s after the end for statements that never complete
(``pool.fetch``/``pool.fetchval`` shortcuts, ``c.execute`` inside ``acquire`` +
``transaction()``, a ``gather`` on one checked-out connection), while ``pool.stats()``
reports every connection idle (once: ``shared`` 1 and ``resetting`` 1 stuck). Without
the kills it passes on uvloop too; with kills and no cancellations it still hangs, so
it is a backend killed under in-flight pipelined statements of pooled connections on
uvloop: their futures are never resolved (no timeout was given, so they wait forever).
A single connection with 50 pipelined statements killed mid-way does not reproduce it
(/tmp-style repro in the report): the pool's shared/resetting paths are involved.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faults.soak import run_soak  # noqa: E402


async def test_soak_with_backend_kills(pg_dsn: str, admin_sql: Any) -> None:
    await run_soak(pg_dsn, admin_sql, kills=True)
