"""Driver layer: agentdb's native API, and the drop-in functions re-exported on first use.

agentdb is a C-core PostgreSQL driver and pool for asyncio services.

The native API follows asyncpg's names: ``connect``, ``create_pool``, ``Pool.acquire``,
``fetch``/``fetchrow``/``fetchval``/``execute``/``executemany``, ``transaction()``.
"""

from typing import TYPE_CHECKING, Any

from . import _core
from ._aio import AgentFuture

_core._setup(AgentFuture)

from ._core import Record  # noqa: E402
from .capabilities import LibpqCapabilities, libpq_capabilities, libpq_version  # noqa: E402
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
    "LibpqCapabilities",
    "libpq_capabilities",
    "libpq_version",
    # the FastAPI drop-in (agentdb.database; SQLAlchemy is imported on first use): its
    # functions, and the names a service's database.py exports (engine: an AsyncEngine
    # standing for the current engine; async_session_maker: an async_sessionmaker)
    "async_session_maker",
    "check_database_connection",
    "close_db_connection",
    "configure",
    "create_db_and_tables",
    "engine",
    "get_engine",
    "get_pool",
    "get_session",
]

if TYPE_CHECKING:  # typed for mypy and documented by mkdocstrings; imported lazily below
    from .database import (
        async_session_maker,
        check_database_connection,
        close_db_connection,
        create_db_and_tables,
        engine,
        get_engine,
        get_pool,
        get_session,
    )
    from .settings import configure

_DATABASE_NAMES = frozenset(
    {
        "async_session_maker",
        "check_database_connection",
        "close_db_connection",
        "create_db_and_tables",
        "engine",
        "get_engine",
        "get_pool",
        "get_session",
    }
)


def __getattr__(name: str) -> Any:
    """The drop-in functions, imported lazily: importing agentdb needs no SQLAlchemy."""
    if name in _DATABASE_NAMES:
        from . import database

        return getattr(database, name)
    if name == "configure":
        from .settings import configure

        return configure
    raise AttributeError(f"module 'agentdb' has no attribute {name!r}")
