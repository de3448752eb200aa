"""Shared checks for the adversity suite: the pool all idle, no backend left behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

AdminSQL = Callable[..., list[tuple[str, ...]]]


class Timer:
    """``with Timer() as t: ...``; ``t.elapsed`` in seconds (also while running)."""

    def __enter__(self) -> Timer:
        self.start = time.monotonic()
        self.end: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = time.monotonic()

    @property
    def elapsed(self) -> float:
        return (self.end if self.end is not None else time.monotonic()) - self.start


async def wait_until(
    pred: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return bool(pred())
        await asyncio.sleep(interval)


def idle_problems(pool: Any) -> list[str]:
    s = pool.stats()
    bad = [f"{k}={s[k]}" for k in ("in_use", "shared", "resetting", "waiting", "opening") if s[k]]
    if s["idle"] != s["size"]:
        bad.append(f"idle={s['idle']} != size={s['size']}")
    return bad


async def settle(pool: Any, timeout: float = 10.0) -> None:
    """Wait (bounded) until the pool is back to all idle; fail with its stats if not."""
    ok = await wait_until(lambda: not idle_problems(pool), timeout)
    stuck = [c._debug_state() for held in pool._connections()[1:] for c in held]
    assert ok, f"pool not all idle after {timeout}s: {idle_problems(pool)} {pool.stats()} {stuck}"


def backends(admin_sql: AdminSQL, dsn: str, app: str) -> list[tuple[str, ...]]:
    """(pid, state) of every backend with ``application_name = app``."""
    return admin_sql(
        dsn,
        "SELECT pid, coalesce(state, '') FROM pg_stat_activity "
        f"WHERE application_name = '{app}' AND pid <> pg_backend_pid()",
    )


async def assert_backends(
    admin_sql: AdminSQL, dsn: str, app: str, *, at_most: int, timeout: float = 10.0
) -> list[tuple[str, ...]]:
    """At most ``at_most`` backends of ``app`` remain (polled: a backend exits a moment
    after its client closes), none idle in transaction."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await asyncio.to_thread(backends, admin_sql, dsn, app)
        stuck = [r for r in rows if r[1].startswith("idle in transaction")]
        if len(rows) <= at_most and not stuck:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(rows)} backends of {app!r} left (allowed {at_most}), "
                f"idle in transaction: {stuck}: {rows}"
            )
        await asyncio.sleep(0.05)


async def assert_clean(
    pool: Any, admin_sql: AdminSQL, dsn: str, app: str, *, timeout: float = 10.0
) -> None:
    """The issue's after-check: pool all idle; backends == pool size; none idle in tx."""
    await settle(pool, timeout)
    await assert_backends(admin_sql, dsn, app, at_most=pool.stats()["size"], timeout=timeout)
