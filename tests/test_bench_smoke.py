"""The benchmark harness runs (``python -m bench --quick``) and writes its JSON.

Speed is never asserted here: only that the harness completes, exits 0 (no case errored)
and writes the documented keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ``python -m bench`` run from a temporary directory, with the checkout appended to
# sys.path: ``bench`` comes from the checkout while ``agentdb`` stays the one this test
# process imports (the installed package; the checkout's directory has no built extension
# unless built in place).
BOOT = (
    "import sys, runpy; sys.path.append({root!r}); "
    "runpy.run_module('bench', run_name='__main__', alter_sys=True)"
)


def test_bench_quick_smoke(pg_dsn: str, tmp_path: Path) -> None:
    import agentdb

    out = tmp_path / "quick.json"
    boot = BOOT.format(root=str(ROOT))
    agentdb_dir = str(Path(agentdb.__file__).resolve().parent.parent)
    boot = f"import sys; sys.path.insert(0, {agentdb_dir!r}); " + boot
    proc = subprocess.run(
        [sys.executable, "-c", boot, "--quick", "--workloads", "b,c,h",
         "--drivers", "agentdb,asyncpg", "--dsn", pg_dsn, "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert {"meta", "config", "results", "ratios", "targets", "memory"} <= doc.keys()
    assert {"date", "machine", "versions"} <= doc["meta"].keys()
    cases = {r["case"] for r in doc["results"]}
    assert {"b.pool.1", "b.pool.100", "b.held.1", "b.held.20", "b.oneconn.100",
            "c.pk.held", "c.pk.pool", "h.mixed", "h.mixed.acquire"} <= cases
    for r in doc["results"]:
        assert r["driver"] in ("agentdb", "asyncpg")
        assert r["status"] == "ok", r
        assert {"qps", "p50_ms", "p99_ms", "cpu_us_per_op"} <= r["median"].keys()
    assert "vs asyncpg" in doc["ratios"]["b.pool.100"]
    # (h): the fast statements' tail and the slow ones, and both its targets measured.
    tail = {"p999_ms", "max_ms", "over_100ms", "slow_ops", "slow_p50_ms"}
    for r in doc["results"]:
        if r["workload"] == "h":
            assert tail <= r["median"].keys() and r["median"]["slow_ops"] >= 1, r
    h_targets = [t for t in doc["targets"] if t["target"].startswith("(h)")]
    assert len(h_targets) == 2 and all(t["value"] is not None for t in h_targets)
