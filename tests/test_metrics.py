"""agentdb.metrics: Prometheus text from pool.stats(), the OpenTelemetry and callback hooks."""

from __future__ import annotations

import asyncio
import builtins
import math
from typing import Any

import pytest

import agentdb
from agentdb import metrics


class FakePool:
    def __init__(self, **stats: Any) -> None:
        self._stats = stats

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)


FAKE = {
    "size": 3,
    "max_size": 30,
    "idle": 2,
    "in_use": 1,
    "waiting": 0,
    "acquired": 10,
    "timeouts": 2,
    "opened": 4,
    "closed": 1,
    "lost": 1,
    "wait_time_total": 0.5,
    "wait_time_max": 0.25,
    "wait_histogram": {
        "1ms": 5,
        "10ms": 2,
        "100ms": 1,
        "1s": 2,
        "10s": 0,
        "30s": 0,
        "60s": 0,
        "inf": 0,
    },
    "closing": False,
}


def parse(text: str) -> dict[str, float]:
    """name{labels} -> value, checking the exposition format's line shapes."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE ")), line
            continue
        key, value = line.rsplit(" ", 1)
        values[key] = float(value.replace("+Inf", "inf"))
    return values


def test_prometheus_text_shapes() -> None:
    text = metrics.prometheus_text(FakePool(**FAKE))
    assert text.endswith("\n")
    v = parse(text)
    assert v["agentdb_connections"] == 3
    assert v["agentdb_connections_idle"] == 2
    assert v["agentdb_acquires_total"] == 10
    assert v["agentdb_acquire_timeouts_total"] == 2
    assert v["agentdb_connections_opened_total"] == 4
    assert v["agentdb_connections_lost_total"] == 1
    # histogram buckets are cumulative, +Inf equals _count
    assert v['agentdb_acquire_wait_seconds_bucket{le="0.001"}'] == 5
    assert v['agentdb_acquire_wait_seconds_bucket{le="0.01"}'] == 7
    assert v['agentdb_acquire_wait_seconds_bucket{le="1.0"}'] == 10
    assert v['agentdb_acquire_wait_seconds_bucket{le="+Inf"}'] == 10
    assert v["agentdb_acquire_wait_seconds_count"] == 10
    assert v["agentdb_acquire_wait_seconds_sum"] == 0.5
    assert "# TYPE agentdb_acquire_wait_seconds histogram" in text
    assert "# TYPE agentdb_acquires counter" in text
    assert "# TYPE agentdb_connections_idle gauge" in text
    # each family's TYPE appears once
    types = [line for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))


def test_prometheus_text_prefix_and_labels() -> None:
    text = metrics.prometheus_text(FakePool(**FAKE), prefix="svc_db", labels={"pool": 'a"b'})
    v = parse(text)
    assert v['svc_db_connections{pool="a\\"b"}'] == 3
    assert v['svc_db_acquire_wait_seconds_bucket{pool="a\\"b",le="+Inf"}'] == 10
    with pytest.raises(ValueError):
        metrics.prometheus_text(FakePool(**FAKE), prefix="bad-prefix")
    with pytest.raises(ValueError):
        metrics.prometheus_text(FakePool(**FAKE), labels={"le": "x"})


def test_prometheus_text_parses_with_prometheus_client() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    families = {
        f.name: f
        for f in parser.text_string_to_metric_families(metrics.prometheus_text(FakePool(**FAKE)))
    }
    assert families["agentdb_acquire_wait_seconds"].type == "histogram"
    assert families["agentdb_acquires"].type == "counter"
    assert families["agentdb_connections_idle"].type == "gauge"


async def test_prometheus_text_from_a_real_pool(pg_dsn: str) -> None:
    pool = await agentdb.create_pool(pg_dsn, pool_size=2, max_overflow=0, min_size=1)
    try:
        async with pool.acquire() as c:
            await c.fetchval("SELECT 1")
        # a waiter: both connections held, a third acquire waits, then gets one
        a = await pool.acquire()
        b = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.02)
        await pool.release(a)
        c2 = await waiter
        await pool.release(c2)
        await pool.release(b)
        v = parse(metrics.prometheus_text(pool))
    finally:
        await pool.close()
    assert v["agentdb_connections_max"] == 2
    assert v["agentdb_acquires_total"] >= 4
    assert v["agentdb_connections_opened_total"] >= 2
    assert (
        v['agentdb_acquire_wait_seconds_bucket{le="+Inf"}']
        == v["agentdb_acquire_wait_seconds_count"]
    )
    assert v["agentdb_acquire_wait_seconds_count"] >= 4
    # the waiter waited >= 20 ms: it is not in the 1 ms or 10 ms buckets
    assert (
        v['agentdb_acquire_wait_seconds_bucket{le="0.01"}']
        < v["agentdb_acquire_wait_seconds_count"]
    )
    assert v["agentdb_acquire_wait_seconds_max"] >= 0.015


def test_observe_callback() -> None:
    seen: list[tuple[str, str, float, dict[str, str]]] = []
    metrics.observe(FakePool(**FAKE), lambda n, k, val, lab: seen.append((n, k, val, dict(lab))))
    names = {s[0] for s in seen}
    assert {"connections", "acquires_total", "acquire_wait_seconds_bucket"} <= names
    inf = [s for s in seen if s[3].get("le") == "+Inf"]
    assert inf and inf[0][2] == 10
    assert all(not math.isnan(s[2]) for s in seen)


class FakeMeter:
    def __init__(self) -> None:
        self.instruments: list[tuple[str, str, list[Any]]] = []

    def _make(self, kind: str) -> Any:
        def create(name: str, callbacks: list[Any], **kw: Any) -> tuple[str, str]:
            self.instruments.append((kind, name, callbacks))
            return (kind, name)

        return create

    def __getattr__(self, name: str) -> Any:
        if name.startswith("create_observable_"):
            return self._make(name[len("create_observable_") :])
        raise AttributeError(name)


def test_register_otel_metrics() -> None:
    otel = pytest.importorskip("opentelemetry.metrics")
    meter = FakeMeter()
    pool = FakePool(**FAKE)
    made = metrics.register_otel_metrics(meter, pool)
    assert len(made) == len(meter.instruments)
    by_name = {name: (kind, cbs) for kind, name, cbs in meter.instruments}
    kind, cbs = by_name["agentdb.connections_idle"]
    assert kind == "up_down_counter"
    (obs,) = cbs[0](otel.CallbackOptions())
    assert obs.value == 2
    kind, cbs = by_name["agentdb.acquire_timeouts"]
    assert kind == "counter"
    assert [o.value for o in cbs[0](otel.CallbackOptions())] == [2]
    (count,) = by_name["agentdb.acquire_wait.count"][1][0](otel.CallbackOptions())
    assert count.value == 10
    # the API's own (no-op) meter accepts the same calls
    metrics.register_otel_metrics(otel.get_meter("agentdb-test"), pool)


def test_register_otel_metrics_without_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_otel(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_otel)
    with pytest.raises(ImportError, match="pip install opentelemetry-api"):
        metrics.register_otel_metrics(FakeMeter(), FakePool(**FAKE))
