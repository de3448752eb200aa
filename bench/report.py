"""The printed/Markdown table, agentdb/peer ratios, and the issue's targets."""

from __future__ import annotations

import math
from typing import Any

PEERS = ("asyncpg", "psycopg")


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        if digits == 0:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def _median(results: list[dict[str, Any]], case: str, driver: str, key: str) -> float | None:
    for r in results:
        if r["case"] == case and r["driver"] == driver and r["median"]:
            v = r["median"].get(key)
            if v is not None and not math.isnan(v):
                return float(v)
    return None


def _total(results: list[dict[str, Any]], case: str, driver: str, key: str) -> int | None:
    """The sum of one metric over every trial of one case and driver."""
    for r in results:
        if r["case"] == case and r["driver"] == driver and r["trials"]:
            return sum(int(t[key]) for t in r["trials"])
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def ratios(results: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """{case: {"vs asyncpg": agentdb qps / asyncpg qps, ...}} (ORM/HTTP peers are SQLAlchemy
    on that driver)."""
    out: dict[str, dict[str, float | None]] = {}
    for case in dict.fromkeys(r["case"] for r in results):
        mine = _median(results, case, "agentdb", "qps")
        row: dict[str, float | None] = {}
        for peer in PEERS:
            if any(r["case"] == case and r["driver"] == peer for r in results):
                row[f"vs {peer}"] = _ratio(mine, _median(results, case, peer, "qps"))
        cpu = _median(results, case, "agentdb", "cpu_us_per_row")
        if case.startswith("d."):
            row["cpu_per_row vs asyncpg"] = _ratio(
                cpu, _median(results, case, "asyncpg", "cpu_us_per_row"))
        out[case] = row
    return out


def targets(results: list[dict[str, Any]], memory: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's speed targets, each a ratio measured in this run."""
    q = lambda case, d: _median(results, case, d, "qps")  # noqa: E731
    rows: list[tuple[str, float | None, float, bool]] = []  # (what, value, goal, higher-is-better)

    def add(what: str, value: float | None, goal: float, higher: bool = True) -> None:
        rows.append((what, value, goal, higher))

    vs = lambda case, peer="asyncpg": _ratio(q(case, "agentdb"), q(case, peer))  # noqa: E731
    add("pool path 100 tasks vs asyncpg", vs("b.pool.100"), 5)
    # The pgbench comparisons come from the (g) cases, where agentdb runs interleaved with
    # pgbench (the b rows ran minutes apart from pgbench).
    add("pool path 100 tasks vs pgbench 20 clients (interleaved in g)",
        _ratio(q("g.pgbench.20", "agentdb"), q("g.pgbench.20", "pgbench")), 1.0)
    add("pool path 1 task vs asyncpg", vs("b.pool.1"), 2.5)
    add("held conn 1 task vs asyncpg", vs("b.held.1"), 1.05)
    add("held conn 1 task vs pgbench 1 client (interleaved in g)",
        _ratio(q("g.pgbench.1", "agentdb"), q("g.pgbench.1", "pgbench")), 0.9)
    add("20 tasks on 20 held conns vs asyncpg",
        _ratio(q("b.held.20", "agentdb"), q("b.held.20", "asyncpg")), 1.15)
    add("100 tasks on one conn vs asyncpg pool of 1",
        _ratio(q("b.oneconn.100", "agentdb"), q("b.oneconn.100", "asyncpg")), 10)
    for case, how in (("d.mixed10k", "jsonb parsed by agentdb only"),
                      ("d.mixed10k.text", "jsonb as text for both")):
        add(f"(d) 10k mixed rows, {how}: rows/s vs asyncpg",
            _ratio(_median(results, case, "agentdb", "rows_ps"),
                   _median(results, case, "asyncpg", "rows_ps")), 1.25)
        add(f"(d) 10k mixed rows, {how}: client CPU/row vs asyncpg",
            _ratio(_median(results, case, "agentdb", "cpu_us_per_row"),
                   _median(results, case, "asyncpg", "cpu_us_per_row")), 0.6, False)
    for case in dict.fromkeys(r["case"] for r in results):
        if case.startswith(("a.", "c.", "e.", "f.")):
            goal = 1.0 if case in ("a.copyfrom", "a.batch") else 1.1
            if case.startswith(("e.", "f.")):
                goal = 1.5
            add(f"{case} vs asyncpg", _ratio(q(case, "agentdb"), q(case, "asyncpg")), goal)
    # (h), issue 10: fast statements must not wait behind slow ones on the pool's
    # connections: as good a tail as asyncpg's, and none over 100 ms in any trial.
    add("(h) fast statements' p99.9 behind slow ones, agentdb pool.fetchval / asyncpg",
        _ratio(_median(results, "h.mixed", "agentdb", "p999_ms"),
               _median(results, "h.mixed", "asyncpg", "p999_ms")), 1.0, False)
    add("(h) agentdb pool.fetchval: fast statements over 100 ms, all trials",
        _total(results, "h.mixed", "agentdb", "over_100ms"), 0, False)
    pool30 = {d: m.get("pool30_rss_mb") for d, m in memory.items() if isinstance(m, dict)}
    if pool30:
        add("RSS of a pool of 30 vs asyncpg", _ratio(pool30.get("agentdb"), pool30.get("asyncpg")),
            1.0, False)
    out = []
    for what, value, goal, higher in rows:
        met = None if value is None else (value >= goal if higher else value <= goal)
        out.append({"target": what, "value": value, "goal": f"{'>=' if higher else '<='} {goal}",
                    "met": met})
    return out


def case_line(case: Any, entries: list[dict[str, Any]], seconds: float) -> str:
    parts = []
    for e in entries:
        if e["median"]:
            parts.append(f"{e['driver']} {_fmt(e['median']['qps'])}/s")
        else:
            parts.append(f"{e['driver']} {e['status']}")
    return f"  {case.name:<22} {'; '.join(parts)}  ({seconds:.0f} s)"


def _driver_label(r: dict[str, Any]) -> str:
    """The driver as the tables name it: ORM/HTTP peers are SQLAlchemy on it, and what it
    ran when that differs from the case's label."""
    driver = str(r["driver"])
    if r["workload"] in "ef" and driver != "agentdb":
        driver = f"sqla+{driver}"
    if r.get("peer"):
        driver += f" ({r['peer']})"
    return driver


def _tail_table(results: list[dict[str, Any]]) -> list[str]:
    """(h): the fast statements' latency tail and the slow ones, medians across trials."""
    lines = [
        "", "| case (h) | driver | fast stmts | fast q/s | p50 ms | p99 ms | p99.9 ms | max ms "
        "| fast > 100 ms | slow stmts | slow p50 ms |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        m = r["median"]
        if "p999_ms" not in m:
            continue
        lines.append(
            f"| {r['case']} | {_driver_label(r)} | {_fmt(float(m['ops']))} | {_fmt(m['qps'])} | "
            f"{_fmt(m['p50_ms'], 3)} | {_fmt(m['p99_ms'], 3)} | {_fmt(m['p999_ms'], 1)} | "
            f"{_fmt(m['max_ms'], 1)} | {_fmt(float(m['over_100ms']))} | "
            f"{_fmt(float(m['slow_ops']))} | {_fmt(m['slow_p50_ms'], 1)} |")
    return lines if len(lines) > 3 else []


def table(doc: dict[str, Any]) -> str:
    """Markdown: one row per case and driver, (h)'s latency tail, then the targets and
    memory."""
    results = doc["results"]
    rat = doc["ratios"]
    lines = [
        "| case | what | driver | q/s | rows/s | p50 ms | p99 ms | CPU us/op | CPU us/row "
        "| agentdb / this |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        m = r["median"]
        ratio = ""
        if r["driver"] in PEERS:
            ratio = _fmt(rat.get(r["case"], {}).get(f"vs {r['driver']}"), 2)
        elif r["driver"] == "pgbench":
            ratio = ""
        driver = _driver_label(r)
        if not m:
            lines.append(f"| {r['case']} | {r['label']} | {driver} | {r['status']} |||||||")
            continue
        show_rows = r["case"].startswith(("a.", "d.", "e."))
        lines.append(
            f"| {r['case']} | {r['label']} | {driver} | {_fmt(m['qps'])} | "
            f"{_fmt(m['rows_ps']) if show_rows else ''} | {_fmt(m['p50_ms'], 3)} | "
            f"{_fmt(m['p99_ms'], 3)} | {_fmt(m['cpu_us_per_op'], 1)} | "
            f"{_fmt(m['cpu_us_per_row'], 2) if show_rows else ''} | {ratio} |")
    out = "\n".join(lines + _tail_table(results))
    if doc.get("targets"):
        t = ["", "| target (issues 4, 10) | measured | goal | met |", "|---|--:|---|---|"]
        for row in doc["targets"]:
            met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
            t.append(f"| {row['target']} | {_fmt(row['value'], 2)} | {row['goal']} | {met} |")
        out += "\n" + "\n".join(t)
    mem = doc.get("memory")
    if mem:
        t = ["", "", "| memory | RSS MB, pool of 30 open | queries | RSS MB before -> after "
             "| gc objects before -> after | status |", "|---|--:|--:|---|---|---|"]
        for d, m in mem.items():
            if not isinstance(m, dict):
                continue
            if "pool30_rss_mb" not in m:
                t.append(f"| {d} | | | | | {m.get('status')} |")
                continue
            t.append(
                f"| {d} | {m['pool30_rss_mb']:.1f} | {m['queries']:,} | "
                f"{m['rss_before_mb']:.1f} -> {m['rss_after_mb']:.1f} | "
                f"{m['objects_before']:,} -> {m['objects_after']:,} | {m.get('status', 'ok')} |")
        out += "\n" + "\n".join(t)
    return out
