"""agentdb: a C-core PostgreSQL driver and pool for asyncio services.

The native API follows asyncpg's names: ``connect``, ``create_pool``, ``Pool.acquire``,
``fetch``/``fetchrow``/``fetchval``/``execute``/``executemany``, ``transaction()``.
"""

from . import _core
from ._aio import AgentFuture

_core._setup(AgentFuture)

from ._core import Record  # noqa: E402
from .connection import Connection, connect  # noqa: E402
from .errors import (  # noqa: E402
    ConnectionLostError,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PoolTimeout,
    ProgrammingError,
    Warning,
)
from .pool import Pool, create_pool  # noqa: E402
from .transaction import Transaction  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Connection",
    "ConnectionLostError",
    "DataError",
    "DatabaseError",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "Pool",
    "PoolTimeout",
    "ProgrammingError",
    "Record",
    "Transaction",
    "Warning",
    "connect",
    "create_pool",
    "libpq_version",
]

libpq_version = _core.libpq_version
