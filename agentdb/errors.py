"""Driver layer: agentdb's exceptions: the PEP 249 hierarchy and one class per SQLSTATE.

The classes live in the C core (``agentdb._core``), which raises them; this module names them.
"""

from __future__ import annotations

from typing import Any

from . import _core

Error = _core.Error
Warning = _core.Warning
InterfaceError = _core.InterfaceError
DatabaseError = _core.DatabaseError
DataError = _core.DataError
OperationalError = _core.OperationalError
IntegrityError = _core.IntegrityError
InternalError = _core.InternalError
ProgrammingError = _core.ProgrammingError
NotSupportedError = _core.NotSupportedError
ConnectionLostError = _core.ConnectionLostError
PoolTimeout = _core.PoolTimeout

#: SQLSTATE -> exception class.
SQLSTATE_CLASSES: dict[str, type[Error]] = {}

for _name in dir(_core):
    _obj = getattr(_core, _name)
    if isinstance(_obj, type) and issubclass(_obj, BaseException):
        globals()[_name] = _obj
        _code = getattr(_obj, "sqlstate", None)
        if isinstance(_code, str) and issubclass(_obj, Error):
            SQLSTATE_CLASSES[_code] = _obj


def lookup(sqlstate: str) -> type[Error]:
    """The exception class for a SQLSTATE (``DatabaseError`` when unknown)."""
    return SQLSTATE_CLASSES.get(sqlstate, DatabaseError)


def __getattr__(name: str) -> Any:  # for type checkers: the generated names are dynamic
    raise AttributeError(f"module 'agentdb.errors' has no attribute {name!r}")
