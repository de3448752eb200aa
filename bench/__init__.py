"""agentdb's benchmark harness: agentdb against asyncpg, psycopg and SQLAlchemy+asyncpg.

Run ``python -m bench --help``. The layout follows MagicStack's pgbench harness: named
query files (``bench/queries/``), a warm-up, fixed-duration trials, queries/s, rows/s and
latency percentiles, a printed table and a JSON file.
"""
