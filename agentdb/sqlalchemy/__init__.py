"""SQLAlchemy async dialect ``postgresql+agentdb`` (imports SQLAlchemy; agentdb itself does not).

Registered as the entry point ``sqlalchemy.dialects: postgresql.agentdb`` and, for in-place
builds, on import of this package.
"""

from __future__ import annotations

from sqlalchemy.dialects import registry as _registry

from .dialect import AgentdbDialect, dialect
from .pool import AgentdbPool

_registry.register("postgresql.agentdb", "agentdb.sqlalchemy", "AgentdbDialect")

__all__ = ["AgentdbDialect", "AgentdbPool", "dialect"]
