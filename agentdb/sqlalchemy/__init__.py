"""Dialect layer: SQLAlchemy's async dialect ``postgresql+agentdb``, registered on import.

This package imports SQLAlchemy; the driver below it does not.

Registered as the entry point ``sqlalchemy.dialects: postgresql.agentdb`` and, for in-place
builds, on import of this package.
"""

from __future__ import annotations

from sqlalchemy.dialects import registry as _registry

from .dialect import AgentdbDialect, dialect
from .pool import AgentdbPool

_registry.register("postgresql.agentdb", "agentdb.sqlalchemy", "AgentdbDialect")

__all__ = ["AgentdbDialect", "AgentdbPool", "dialect"]
