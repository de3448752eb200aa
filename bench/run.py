"""``python -m bench``: run the workloads, interleaving drivers, print a table, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # ``python bench/run.py``
    sys.path.append(str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from . import drivers as drv  # noqa: E402
from . import report, util  # noqa: E402
from .timing import medians, run_trial  # noqa: E402
from .workloads import Case, Prepared, cases_a, cases_b, cases_c, cases_d  # noqa: E402

WORKLOADS = "abcdefghm"  # m: memory
DEFAULT_DSN = os.environ.get("BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/bench")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--dsn", default=DEFAULT_DSN,
                    help="libpq URL of the database to use (created if missing); env BENCH_DSN")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per trial (3)")
    ap.add_argument("--trials", type=int, default=3, help="trials per driver (3)")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per driver (1)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma list of a,b,c,d,e,f,g,h,m (m = memory); default all")
    ap.add_argument("--drivers", default=",".join(drv.DRIVERS),
                    help="comma list of agentdb,asyncpg,psycopg; default all")
    ap.add_argument("--cases", default="",
                    help="only cases whose name starts with one of these (comma list)")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    ap.add_argument("--mem-queries", type=int, default=1_000_000,
                    help="queries through the pool for the memory check (1M)")
    ap.add_argument("--mixed-sleep", type=float, default=0.5,
                    help="seconds of pg_sleep in (h)'s slow statement (0.5)")
    ap.add_argument("--json", type=Path, default=None,
                    help=f"where to write results (default {DEFAULT_JSON})")
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke: tiny durations, one trial, every selected workload once")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.trials, args.warmup = 0.2, 1, 0.05
        args.mem_queries = min(args.mem_queries, 2000)
        args.mixed_sleep = min(args.mixed_sleep, 0.05)
    if args.json is None:
        args.json = DEFAULT_JSON
    args.workload_set = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workload_set if w not in WORKLOADS]
    if bad:
        ap.error(f"unknown workloads: {bad}")
    args.driver_list = [d.strip() for d in args.drivers.split(",") if d.strip()]
    bad = [d for d in args.driver_list if d not in drv.DRIVERS]
    if bad:
        ap.error(f"unknown drivers: {bad}")
    args.case_prefixes = [c.strip() for c in args.cases.split(",") if c.strip()]
    return args


def build_cases(args: argparse.Namespace) -> list[Case]:
    cases: list[Case] = []
    ws = args.workload_set
    if "a" in ws:
        cases += cases_a()
    if "b" in ws:
        cases += cases_b()
    if "c" in ws:
        cases += cases_c()
    if "d" in ws:
        cases += cases_d()
    if "e" in ws:
        from .orm import cases_e

        cases += cases_e()
    if "f" in ws:
        from .http import cases_f

        cases += cases_f(args)
    if "g" in ws:
        from .pgbench import cases_g

        cases += cases_g()
    if "h" in ws:
        from .mixed import cases_h

        cases += cases_h(args.mixed_sleep)
    if args.case_prefixes:
        cases = [c for c in cases if any(c.name.startswith(p) for p in args.case_prefixes)]
    return cases


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()[:300]


async def run_case(case: Case, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every driver of one case: prepare all, warm up each, then trials A B A B ..."""
    names = list(case.drivers) if case.drivers else list(args.driver_list)
    entries: dict[str, dict[str, Any]] = {}
    prepared: dict[str, Prepared] = {}
    for name in names:
        entry = {"workload": case.workload, "case": case.name, "label": case.label,
                 "driver": name, "tasks": case.tasks, "peer": case.peer_labels.get(name),
                 "status": "ok", "trials": [], "median": {}}
        entries[name] = entry
        reason = drv.available(name) if name in drv.DRIVERS else None
        if reason:
            entry["status"] = f"n/a: {reason}"
            continue
        try:
            if name in drv.DRIVERS:
                driver = drv.make(name, args.dsn)
            else:
                driver = drv.External(name, args.dsn)
            prepared[name] = await asyncio.wait_for(case.prepare(driver), 120)
        except drv.NotAvailable as e:
            entry["status"] = f"n/a: {e}"
        except Exception as e:  # noqa: BLE001 - reported in the table and the exit status
            entry["status"] = f"error: {_error_text(e)}"
            traceback.print_exc()

    limit = args.duration * 10 + 60

    async def one(name: str, duration: float) -> dict[str, Any] | None:
        p = prepared[name]
        try:
            if p.trial is not None:
                return await asyncio.wait_for(p.trial(duration), limit)
            return await asyncio.wait_for(run_trial(p.ops, duration), limit)
        except Exception as e:  # noqa: BLE001
            entries[name]["status"] = f"error: {_error_text(e)}"
            traceback.print_exc()
            prepared.pop(name)
            await _close(name, p, entries)
            return None

    try:
        if case.per_trial_sql:
            util.psql(args.dsn, case.per_trial_sql)
        for name in list(prepared):
            if name in prepared:
                await one(name, args.warmup)
        for _ in range(args.trials):
            if case.per_trial_sql:
                util.psql(args.dsn, case.per_trial_sql)
            for name in list(prepared):
                if name in prepared:
                    result = await one(name, args.duration)
                    if result is not None:
                        entries[name]["trials"].append(result)
    finally:
        for name, p in list(prepared.items()):
            await _close(name, p, entries)
    for entry in entries.values():
        if entry["trials"]:
            entry["median"] = medians(entry["trials"])
    return list(entries.values())


async def _close(name: str, p: Prepared, entries: dict[str, dict[str, Any]]) -> None:
    try:
        await asyncio.wait_for(p.close(), 60)
    except Exception as e:  # noqa: BLE001
        if entries[name]["status"] == "ok":
            entries[name]["status"] = f"error on close: {_error_text(e)}"


async def run_all(args: argparse.Namespace, cases: list[Case]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for case in cases:
        t0 = time.monotonic()
        if case.setup_sql:
            if case.teardown_sql:
                try:
                    util.psql(args.dsn, case.teardown_sql)  # left over from an aborted run
                except RuntimeError:
                    pass
            util.psql(args.dsn, case.setup_sql)
        try:
            entries = await run_case(case, args)
        finally:
            if case.teardown_sql:
                util.psql(args.dsn, case.teardown_sql)
        results += entries
        print(report.case_line(case, entries, time.monotonic() - t0), flush=True)
    return results


def versions(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for name in drv.DRIVERS:
        if drv.available(name) is None:
            try:
                out[name] = drv.make(name, args.dsn).version()
            except Exception as e:  # noqa: BLE001
                out[name] = f"? ({e})"
    for mod in ("sqlalchemy", "uvloop", "fastapi", "uvicorn", "psycopg_pool"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    try:
        out["postgresql"] = util.psql(args.dsn, "SHOW server_version").strip()
    except Exception:  # noqa: BLE001
        pass
    return out


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    util.ensure_database(args.dsn)
    cases = build_cases(args)
    started = time.monotonic()
    if args.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    else:
        loop_factory = None
    print(f"bench: {len(cases)} cases x drivers {args.driver_list}, {args.trials} trials of "
          f"{args.duration} s after {args.warmup} s warm-up, loop "
          f"{'uvloop' if args.uvloop else 'asyncio'}", flush=True)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        results = runner.run(run_all(args, cases))
    memory: dict[str, Any] = {}
    if "m" in args.workload_set:
        from .memory import run_memory

        memory = run_memory(args)
    doc: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "versions": versions(args),
            "loop": "uvloop" if args.uvloop else "asyncio",
            "wall_s": round(time.monotonic() - started, 1),
        },
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if k not in ("dsn",)},
        "results": results,
        "memory": memory,
    }
    doc["ratios"] = report.ratios(results)
    doc["targets"] = report.targets(results, memory)
    print()
    print(report.table(doc))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nwrote {args.json}")
    errors = [r for r in results if r["status"].startswith("error")]
    errors += [m for m in memory.values() if isinstance(m, dict) and
               str(m.get("status", "ok")).startswith("error")]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
