"""Ops layer: pool metrics for dashboards: Prometheus text and an OpenTelemetry hook.

Both read ``pool.stats()`` (the C pool's counters) when asked; neither needs a library:

- ``prometheus_text(pool)`` returns the Prometheus text exposition format (version 0.0.4),
  ready to be served from a ``/metrics`` endpoint;
- ``register_otel_metrics(meter, pool)`` registers observable instruments on an
  OpenTelemetry ``Meter`` (needs ``opentelemetry-api``, which is not a dependency);
- ``observe(pool, callback)`` calls ``callback(name, kind, value, labels)`` for every
  sample, for any other metrics system.

``pool`` is a native ``agentdb.Pool`` (``await agentdb.get_pool()`` gives the one under the
drop-in functions), or anything with a ``stats()`` method returning the same keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "GAUGES",
    "COUNTERS",
    "WAIT_BUCKETS",
    "Sample",
    "observe",
    "prometheus_text",
    "register_otel_metrics",
    "samples",
]

Kind = Literal["gauge", "counter", "histogram"]


class HasStats(Protocol):
    def stats(self) -> dict[str, Any]: ...


# stats() key -> (metric suffix, help). Gauges: values that go up and down.
GAUGES: dict[str, tuple[str, str]] = {
    "size": ("connections", "Connections open in the pool (idle, in use and shared)."),
    "max_size": ("connections_max", "Most connections the pool may open."),
    "pool_size": ("pool_size", "Connections the pool keeps open."),
    "max_overflow": ("max_overflow", "Connections allowed above pool_size."),
    "overflow": ("connections_overflow", "Connections open above pool_size."),
    "idle": ("connections_idle", "Idle connections."),
    "in_use": ("connections_in_use", "Connections checked out with acquire()."),
    "shared": ("connections_shared", "Connections running pool shortcut statements."),
    "resetting": ("connections_resetting", "Connections being rolled back or reset."),
    "opening": ("connections_opening", "Connections being opened."),
    "waiting": ("acquire_waiting", "Tasks waiting for a connection."),
}

# stats() key -> (metric suffix without _total, help). Counters only go up.
COUNTERS: dict[str, tuple[str, str]] = {
    "acquired": ("acquires", "Connections handed out by acquire()."),
    "shortcuts": ("shortcut_statements", "Statements run through pool shortcuts (pool.fetch...)."),
    "timeouts": ("acquire_timeouts", "acquire() calls that timed out (PoolTimeout)."),
    "cancelled_waits": ("acquire_cancelled", "acquire() waits cancelled by their task."),
    "opened": ("connections_opened", "Connections opened."),
    "closed": ("connections_closed", "Connections closed."),
    "lost": ("connections_lost", "Connections found broken (server gone, network error)."),
    "recycled": ("connections_recycled", "Connections replaced for age (pool_recycle)."),
    "expired": ("connections_expired", "Connections closed for idleness (max_idle)."),
    "pings": ("pings", "Liveness pings before hand-out (pre_ping)."),
    "failed_pings": ("pings_failed", "Liveness pings that failed."),
    "connect_errors": ("connect_errors", "Failed connection attempts."),
    "rollbacks": ("rollbacks", "Connections rolled back when released inside a transaction."),
    "session_resets": (
        "session_resets",
        "Sessions reset after their user changed them (SET, LISTEN, temporary tables...).",
    ),
    "isolated_shortcuts": (
        "isolated_shortcuts",
        "Shortcut statements that changed the session and ran on a connection of their own.",
    ),
    "grown_for_wait": (
        "grown_for_wait",
        "Shortcuts that opened a connection rather than queue behind long statements.",
    ),
    "leaked": ("connections_leaked", "Connections garbage-collected while checked out."),
    "queries_cancelled": (
        "queries_cancelled",
        "Statements whose awaiter gave up (timeout or cancelled task).",
    ),
    "queries_cancelled_on_server": (
        "queries_cancelled_on_server",
        "Of those, statements that had reached the server.",
    ),
}

# wait_histogram keys (per-bucket counts, not cumulative) -> upper bound in seconds.
WAIT_BUCKETS: dict[str, float] = {
    "1ms": 0.001,
    "10ms": 0.01,
    "100ms": 0.1,
    "1s": 1.0,
    "10s": 10.0,
    "30s": 30.0,
    "60s": 60.0,
    "inf": math.inf,
}


@dataclass(frozen=True)
class Sample:
    """One value: ``name`` without the prefix (``connections_idle``, ``acquires_total``,
    ``acquire_wait_seconds_bucket``...)."""

    name: str
    kind: Kind
    value: float
    labels: Mapping[str, str]
    help: str


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def samples(stats: Mapping[str, Any]) -> Iterator[Sample]:
    """Every sample of one ``pool.stats()`` result (unknown keys are skipped)."""
    for key, (name, help_) in GAUGES.items():
        if key in stats:
            yield Sample(name, "gauge", float(stats[key]), {}, help_)
    for key, (name, help_) in COUNTERS.items():
        if key in stats:
            yield Sample(name + "_total", "counter", float(stats[key]), {}, help_)
    hist = stats.get("wait_histogram")
    if isinstance(hist, Mapping):
        help_ = "Time acquire() waited for a connection."
        cumulative = 0.0
        for key, bound in WAIT_BUCKETS.items():
            cumulative += float(hist.get(key, 0))
            yield Sample(
                "acquire_wait_seconds_bucket", "histogram", cumulative, {"le": _le(bound)}, help_
            )
        yield Sample("acquire_wait_seconds_count", "histogram", cumulative, {}, help_)
        yield Sample(
            "acquire_wait_seconds_sum",
            "histogram",
            float(stats.get("wait_time_total", 0.0)),
            {},
            help_,
        )
    if "wait_time_max" in stats:
        yield Sample(
            "acquire_wait_seconds_max",
            "gauge",
            float(stats["wait_time_max"]),
            {},
            "Longest time acquire() waited for a connection.",
        )
    if "closing" in stats:
        yield Sample("closing", "gauge", 1.0 if stats["closing"] else 0.0, {}, "1 while closing.")


_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


def _family(name: str, kind: Kind) -> str:
    if kind == "histogram":
        return re.sub(r"_(bucket|count|sum)$", "", name)
    if kind == "counter":
        return name[: -len("_total")] if name.endswith("_total") else name
    return name


def prometheus_text(
    pool: HasStats | Iterable[HasStats],
    prefix: str = "agentdb",
    labels: Mapping[str, str] | None = None,
) -> str:
    """The pool's statistics in Prometheus' text exposition format (``text/plain;
    version=0.0.4``): gauges for sizes, ``*_total`` counters, and the histogram
    ``<prefix>_acquire_wait_seconds`` built from the pool's wait buckets.

    ``labels`` are added to every sample (``{"pool": "main"}``). Serve it with, for
    example, ``PlainTextResponse(prometheus_text(await agentdb.get_pool()))``.
    """
    if not _NAME.match(prefix):
        raise ValueError(f"invalid metric prefix {prefix!r}")
    extra = dict(labels or {})
    for k in extra:
        if not _LABEL.match(k) or k == "le":
            raise ValueError(f"invalid label name {k!r}")
    pools = [pool] if hasattr(pool, "stats") else list(pool)
    families: dict[str, tuple[Kind, str, list[str]]] = {}
    for p in pools:
        for s in samples(p.stats()):
            family = f"{prefix}_{_family(s.name, s.kind)}"
            entry = families.setdefault(family, (s.kind, s.help, []))
            all_labels = {**extra, **s.labels}
            label_text = ""
            if all_labels:
                label_text = (
                    "{"
                    + ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in all_labels.items())
                    + "}"
                )
            entry[2].append(f"{prefix}_{s.name}{label_text} {_fmt_value(s.value)}")
    out: list[str] = []
    for family, (kind, help_, lines) in families.items():
        out.append(f"# HELP {family} {help_}")
        out.append(f"# TYPE {family} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n"


PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def observe(pool: HasStats, callback: Callable[[str, Kind, float, Mapping[str, str]], Any]) -> None:
    """Call ``callback(name, kind, value, labels)`` once per sample of ``pool.stats()``
    (names without a prefix, as in ``samples``): a hook for any metrics library."""
    for s in samples(pool.stats()):
        callback(s.name, s.kind, s.value, s.labels)


def register_otel_metrics(meter: Any, pool: HasStats, prefix: str = "agentdb") -> list[Any]:
    """Register observable OpenTelemetry instruments reading ``pool.stats()`` on each
    collection: an up-down counter per gauge, a counter per counter and the acquire-wait
    sum/count/max (OpenTelemetry has no observable histogram). ``meter`` comes from
    ``opentelemetry.metrics.get_meter(...)``. Returns the instruments.

    Raises ImportError naming the package when ``opentelemetry-api`` is not installed.
    """
    try:
        from opentelemetry.metrics import CallbackOptions, Observation
    except ImportError as e:  # pragma: no cover - exercised by a test with the module hidden
        raise ImportError(
            "agentdb.metrics.register_otel_metrics needs the OpenTelemetry API: "
            "pip install opentelemetry-api"
        ) from e

    def reader(key: str, scale: float = 1.0) -> Callable[[CallbackOptions], Iterable[Any]]:
        def cb(options: CallbackOptions) -> Iterable[Any]:
            value = pool.stats().get(key)
            return [] if value is None else [Observation(float(value) * scale)]

        return cb

    instruments: list[Any] = []
    for key, (name, help_) in GAUGES.items():
        instruments.append(
            meter.create_observable_up_down_counter(
                f"{prefix}.{name}", callbacks=[reader(key)], description=help_
            )
        )
    for key, (name, help_) in COUNTERS.items():
        instruments.append(
            meter.create_observable_counter(
                f"{prefix}.{name}", callbacks=[reader(key)], description=help_
            )
        )

    def wait_count(options: CallbackOptions) -> Iterable[Any]:
        hist = pool.stats().get("wait_histogram") or {}
        return [Observation(float(sum(hist.values())))]

    instruments.append(
        meter.create_observable_counter(
            f"{prefix}.acquire_wait.count",
            callbacks=[wait_count],
            description="acquire() calls that were timed (every acquire).",
        )
    )
    instruments.append(
        meter.create_observable_counter(
            f"{prefix}.acquire_wait.sum",
            callbacks=[reader("wait_time_total")],
            unit="s",
            description="Total time acquire() waited for a connection.",
        )
    )
    instruments.append(
        meter.create_observable_gauge(
            f"{prefix}.acquire_wait.max",
            callbacks=[reader("wait_time_max")],
            unit="s",
            description="Longest time acquire() waited for a connection.",
        )
    )
    return instruments
