"""Drop-in layer: agentdb's settings: the one module that reads the environment.

=========================  ==========================================================
``DATABASE_URL``           default ``postgresql+asyncpg://postgres:postgres@localhost:5432/agentplatform``;
                           ``postgres://``, ``postgresql://``, ``+asyncpg``, ``+psycopg`` and
                           ``+agentdb`` URLs all run on agentdb
``DEBUG``                  ``true``: the engine is built with ``echo=True``: SQLAlchemy
                           prints each statement and its parameters (its own handler, on
                           stdout, when the application configured none)
``AGENTDB_POOL_SIZE``      20
``AGENTDB_MAX_OVERFLOW``   10
``AGENTDB_POOL_TIMEOUT``   30 (seconds)
``AGENTDB_POOL_RECYCLE``   3600 (seconds)
``AGENTDB_PRE_PING``       true
``AGENTDB_SLOW_QUERY_MS``  0 (off): statements slower than this many milliseconds are
                           logged at WARNING on the ``agentdb`` logger
``AGENTDB_LOG_PARAMETERS`` true; ``false`` keeps statement parameters out of the logs
                           (the DEBUG echo, slow-query warnings and SQLAlchemy's errors:
                           SQLAlchemy's ``hide_parameters=True``)
=========================  ==========================================================

The environment is read once, on first use; ``configure(**overrides)`` changes settings
afterwards (the next engine is built with them).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from . import dsn as _dsn

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres:postgres@localhost:5432/agentplatform"

_TRUE = ("1", "true", "yes", "on")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What agentdb's drop-in functions are built from."""

    database_url: str = DEFAULT_DATABASE_URL
    debug: bool = False
    pool_size: int = 20
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: float = 3600.0
    pre_ping: bool = True
    slow_query_ms: float = 0.0
    log_parameters: bool = True

    @property
    def sqlalchemy_url(self) -> str:
        """``database_url`` with its scheme turned into ``postgresql+agentdb://``."""
        return agentdb_url(self.database_url)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown["database_url"] = _dsn.hide_password(self.database_url)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def agentdb_url(url: str) -> str:
    """Any PostgreSQL URL users have, as a ``postgresql+agentdb://`` URL."""
    parts = _dsn.split_url(url.strip())
    if parts is None:
        raise ValueError("DATABASE_URL must be a postgres:// or postgresql[+driver]:// URL")
    return "postgresql+agentdb://" + parts[1]


#: The URL with its password replaced by ``***`` (``agentdb.dsn.hide_password``).
hide_password = _dsn.hide_password


def _bool(value: str) -> bool:
    return value.strip().lower() in _TRUE


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings read from ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ
    d = Settings()
    return Settings(
        database_url=env.get("DATABASE_URL") or d.database_url,
        debug=_bool(env.get("DEBUG", "")),
        pool_size=int(env.get("AGENTDB_POOL_SIZE", d.pool_size)),
        max_overflow=int(env.get("AGENTDB_MAX_OVERFLOW", d.max_overflow)),
        pool_timeout=float(env.get("AGENTDB_POOL_TIMEOUT", d.pool_timeout)),
        pool_recycle=float(env.get("AGENTDB_POOL_RECYCLE", d.pool_recycle)),
        pre_ping=_bool(env.get("AGENTDB_PRE_PING", "true")),
        slow_query_ms=float(env.get("AGENTDB_SLOW_QUERY_MS") or d.slow_query_ms),
        log_parameters=_bool(env.get("AGENTDB_LOG_PARAMETERS", "true")),
    )


_current: Settings | None = None
_generation = 0


def get_settings() -> Settings:
    """The current settings (the environment, read on first call, plus ``configure``)."""
    global _current
    if _current is None:
        _current = from_environ()
    return _current


def configure(**overrides: Any) -> Settings:
    """Override settings (``database_url``, ``debug``, ``pool_size``, ``max_overflow``,
    ``pool_timeout``, ``pool_recycle``, ``pre_ping``, ``slow_query_ms``,
    ``log_parameters``); the next engine uses them.

    An engine already built is replaced at its next use: sessions made from then on use
    the new engine, and the old one is drained (its checked-out connections finish their
    work, a transaction in progress included) and disposed of when the last comes back.
    """
    global _current, _generation
    names = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    _current = dataclasses.replace(get_settings(), **overrides)
    _generation += 1
    return _current


def reset() -> None:
    """Forget overrides; the environment is read again on next use."""
    global _current, _generation
    _current = None
    _generation += 1


def generation() -> int:
    """Bumped by ``configure``/``reset``: an engine built earlier is stale."""
    return _generation
