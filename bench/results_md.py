"""Render ``bench/RESULTS.md`` from a results JSON:
``python -m bench.results_md bench/results/full.json > bench/RESULTS.md``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .report import table


def render(doc: dict, source: str) -> str:  # type: ignore[type-arg]
    meta = doc["meta"]
    m, v, c = meta["machine"], meta["versions"], doc["config"]
    lines = [
        "# Benchmark results",
        "",
        f"Latest full-ish run: {meta['date']}, loop `{meta['loop']}`, "
        f"{c['trials']} trials x {c['duration']} s per driver after a {c['warmup']} s warm-up, "
        f"drivers interleaved; medians across trials. Whole run: {meta['wall_s']} s. "
        f"Raw numbers: `{source}`.",
        "",
        "Command: `python -m bench --duration {d:g} --trials {t} --warmup {w:g} "
        "--mem-queries {q}`".format(d=c["duration"], t=c["trials"], w=c["warmup"],
                                   q=c["mem_queries"]),
        "",
        "## Machine and versions",
        "",
        f"- machine: {m['nproc']} CPUs, {m['cpu']} ({m['platform']}); client and server share it",
        f"- PostgreSQL {v.get('postgresql', '?')} on loopback (127.0.0.1)",
        f"- Python {v['python']}; agentdb {v.get('agentdb', 'n/a')}",
        f"- asyncpg {v.get('asyncpg', 'n/a')}; psycopg {v.get('psycopg', 'n/a')}; "
        f"psycopg_pool {v.get('psycopg_pool', 'n/a')}",
        f"- SQLAlchemy {v.get('sqlalchemy', 'n/a')}, FastAPI {v.get('fastapi', 'n/a')}, "
        f"uvicorn {v.get('uvicorn', 'n/a')}, uvloop {v.get('uvloop', 'n/a')}",
        "",
        "## How to read it",
        "",
        "- q/s: operations per second (one operation = one statement, one COPY, one",
        "  1,000-row executemany, one ORM session, or one HTTP request); rows/s counts rows",
        "  fetched or written. p50/p99: latency of one operation as its task saw it (pool",
        "  waits included). CPU: this process's `time.process_time()` per operation/row",
        "  (pgbench: pgbench's own; HTTP: the service process's).",
        "- `agentdb / this`: agentdb's q/s divided by this row's. ORM/HTTP peers are SQLAlchemy",
        "  on that driver (`pool_size=20, max_overflow=10, pool_pre_ping=True`).",
        "- asyncpg returns jsonb as text; agentdb and psycopg parse it. psycopg runs",
        "  autocommit with its default (text) result format; its pool is psycopg_pool.",
        "- Pools are exactly 20 connections for every driver (agentdb `max_overflow=0`);",
        "  (h)'s are 5.",
        "- (h) mixes slow and fast statements on one pool of 5 per driver: 3 tasks loop",
        "  `SELECT pg_sleep(0.5)` (`--mixed-sleep`), 20 loop `SELECT 1`. Its q/s, p50 and p99",
        "  are the fast statements'; its own table adds their p99.9, max and how many took",
        "  over 100 ms (queued behind a slow statement), and the slow ones' count and p50,",
        "  medians per trial. CPU/op counts both kinds.",
        "",
        "## Results",
        "",
        table(doc),
        "",
    ]
    return "\n".join(lines)


def render_extra(doc: dict, source: str) -> str:  # type: ignore[type-arg]
    """Another run (e.g. agentdb built against a newer libpq) as a section of its own."""
    meta, v, c = doc["meta"], doc["meta"]["versions"], doc["config"]
    workloads = ",".join(sorted({r["workload"] for r in doc["results"]}))
    return "\n".join([
        f"## Workloads {workloads} with agentdb {v.get('agentdb', 'n/a')}, loop {meta['loop']}",
        "",
        f"Run {meta['date']}, {c['trials']} trials x {c['duration']} s, same machine and "
        f"server; raw numbers: `{source}`.",
        "",
        table(doc),
        "",
    ])


def main() -> int:
    """``python -m bench.results_md FULL.json [EXTRA.json ...]``: the full run, then each
    extra run as a section of its own."""
    paths = [Path(p) for p in sys.argv[1:]] or [Path("bench/results/full.json")]
    out = render(json.loads(paths[0].read_text()), str(paths[0]))
    for extra in paths[1:]:
        out += "\n" + render_extra(json.loads(extra.read_text()), str(extra))
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
