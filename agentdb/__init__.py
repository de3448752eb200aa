"""agentdb: a C-core PostgreSQL driver and pool for asyncio services."""

from . import _core
from ._aio import AgentFuture

_core._setup(AgentFuture)
