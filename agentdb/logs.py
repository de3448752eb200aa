"""Driver layer: the ``agentdb`` logger: what is logged, at which level, and what never is.

========  =================================================================================
INFO      connection events: a connection opened (``user@host:port/db``, backend pid, TLS),
          a connection attempt that failed, a pool created and closed (with its counters)
WARNING   a statement slower than ``AGENTDB_SLOW_QUERY_MS`` (SQLAlchemy/drop-in path)
========  =================================================================================

Statements themselves are not logged here: ``DEBUG=true`` turns on SQLAlchemy's own echo
for the drop-in's engine (``sqlalchemy.engine.Engine`` logger, SQLAlchemy's format and
handler), and ``mask_passwords_in_echo`` keeps ``PASSWORD '...'`` literals out of it.

Parameters are replaced by ``[parameters hidden]`` when ``AGENTDB_LOG_PARAMETERS=false``.
Passwords are never logged: URLs are not logged at all (only user, host, port and
database), and a ``PASSWORD '...'`` literal in a statement's text is masked.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger("agentdb")

HIDDEN = "[parameters hidden]"
_PASSWORD_LITERAL = re.compile(r"(\bPASSWORD\s+)(E?'(?:[^']|'')*')", re.IGNORECASE)
_MAX_PARAMS_CHARS = 1000
_T0 = "agentdb_t0"


def redact_sql(statement: str) -> str:
    """``statement`` with any ``PASSWORD '...'`` literal replaced by ``'***'``."""
    return _PASSWORD_LITERAL.sub(r"\1'***'", statement)


def format_params(params: Any, show: bool) -> str:
    """Parameters for a log line: hidden, or their repr cut to a sane length."""
    if not show:
        return HIDDEN
    text = repr(params)
    if len(text) > _MAX_PARAMS_CHARS:
        text = text[:_MAX_PARAMS_CHARS] + f"... ({len(text)} chars)"
    return text


def describe_target(options: dict[str, str]) -> str:
    """``user@host:port/dbname`` from libpq keywords (never the password)."""
    host = options.get("host") or options.get("hostaddr") or "(default socket)"
    port = options.get("port") or "5432"
    user = options.get("user") or "(default user)"
    return f"{user}@{host}:{port}/{options.get('dbname') or user}"


class _MaskPasswords(logging.Filter):
    """Masks ``PASSWORD '...'`` literals in the statements a logger's records carry."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if isinstance(msg, str) and "assword" in msg.lower():
            record.msg = redact_sql(msg)
        return True


#: The logger SQLAlchemy's echo writes to for an engine without a ``logging_name``.
ECHO_LOGGER = "sqlalchemy.engine.Engine"


def mask_passwords_in_echo(name: str = ECHO_LOGGER) -> None:
    """Mask ``PASSWORD '...'`` literals in the statements SQLAlchemy's echo logs (a filter
    on that logger, added once; records are masked before any handler sees them)."""
    log = logging.getLogger(name)
    if not any(isinstance(f, _MaskPasswords) for f in log.filters):
        log.addFilter(_MaskPasswords())


class StatementLogSettings(Protocol):
    """What ``install_slow_query_warnings`` reads: ``agentdb.settings.Settings`` has it (a
    protocol, so that this driver-layer module imports nothing of the drop-in's)."""

    @property
    def slow_query_ms(self) -> float: ...

    @property
    def log_parameters(self) -> bool: ...


def install_slow_query_warnings(engine: AsyncEngine, settings: StatementLogSettings) -> bool:
    """Time every statement of ``engine`` when ``settings.slow_query_ms`` asks for
    slow-query warnings; return whether it did."""
    if settings.slow_query_ms <= 0:
        return False
    threshold = settings.slow_query_ms / 1000.0
    show = settings.log_parameters
    limit_ms = settings.slow_query_ms

    from sqlalchemy import event

    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        conn.info.setdefault(_T0, []).append(time.perf_counter())

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _after(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        stack = conn.info.get(_T0)
        t0 = stack.pop() if stack else time.perf_counter()
        elapsed = time.perf_counter() - t0
        if elapsed >= threshold:
            logger.warning(
                "slow query (%.1f ms, over %g ms): %s %s",
                elapsed * 1000.0,
                limit_ms,
                redact_sql(statement),
                format_params(params, show),
            )

    @event.listens_for(sync_engine, "handle_error")
    def _failed(context: Any) -> None:
        conn = context.connection
        if conn is not None:
            stack = conn.info.get(_T0)
            if stack:
                stack.pop()

    return True
