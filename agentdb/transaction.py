"""Driver layer: transactions and savepoints: ``async with conn.transaction(): ...``."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from . import _core
from ._sql import ISOLATION_LEVELS, begin_sql

if TYPE_CHECKING:
    from .connection import Connection


class Transaction:
    """A transaction block; nested blocks become savepoints.

    The outermost block sends ``BEGIN`` (with ``isolation``, ``readonly``, ``deferrable``);
    an inner block sends ``SAVEPOINT``. Leaving with an exception rolls back that level only.
    A transaction left open when its connection goes back to a pool ends there: the pool
    rolls it back; ``commit()`` then raises InterfaceError, ``rollback()`` does nothing.
    """

    __slots__ = (
        "_conn",
        "_isolation",
        "_readonly",
        "_deferrable",
        "_savepoint",
        "_state",
        "_lease",
    )

    def __init__(
        self,
        conn: Connection,
        isolation: str | None = None,
        readonly: bool = False,
        deferrable: bool = False,
    ) -> None:
        if isolation is not None and isolation not in ISOLATION_LEVELS:
            raise ValueError(
                f"isolation must be one of {sorted(ISOLATION_LEVELS)}, not {isolation!r}"
            )
        self._conn = conn
        self._isolation = isolation
        self._readonly = readonly
        self._deferrable = deferrable
        self._savepoint: str | None = None
        self._state = "new"
        self._lease = -1  # the connection's lease when it started

    async def start(self) -> None:
        if self._state != "new":
            raise _core.InterfaceError(f"cannot start a transaction that is {self._state}")
        conn = self._conn
        stack = conn._transactions
        if stack:
            if self._isolation or self._readonly or self._deferrable:
                raise _core.InterfaceError(
                    "isolation, readonly and deferrable apply to the outermost transaction only"
                )
            self._savepoint = f"agentdb_sp_{len(stack)}"
            await conn.execute(f"SAVEPOINT {self._savepoint}")
        else:
            if conn.is_in_transaction():
                raise _core.InterfaceError(
                    "cannot start a transaction: one was begun outside transaction()"
                )
            await conn.execute(begin_sql(self._isolation, self._readonly, self._deferrable))
        stack.append(self)
        self._lease = conn._lease
        self._state = "started"

    def _pop(self) -> None:
        stack = self._conn._transactions
        if not stack or stack[-1] is not self:
            raise _core.InterfaceError("transactions must end in the reverse order they began")
        stack.pop()

    def _released(self) -> bool:
        """Whether the connection went back to its pool (which rolled this back)."""
        if self._state == "started" and self._conn._lease != self._lease:
            self._state = "rolled back"
        return self._state == "rolled back" and self._conn._lease != self._lease

    async def commit(self) -> None:
        if self._released():
            raise _core.InterfaceError(
                "cannot commit: the transaction's connection was released to its pool, "
                "which rolled the transaction back"
            )
        self._check_started()
        self._pop()
        self._state = "committed"
        if self._savepoint:
            await self._conn.execute(f"RELEASE SAVEPOINT {self._savepoint}")
        else:
            await self._conn.execute("COMMIT")

    async def rollback(self) -> None:
        if self._released():
            return  # the pool rolled it back already
        self._check_started()
        self._pop()
        self._state = "rolled back"
        if self._conn.is_closed():
            return
        if self._savepoint:
            await self._conn.execute(
                f"ROLLBACK TO SAVEPOINT {self._savepoint}; RELEASE SAVEPOINT {self._savepoint}"
            )
        else:
            await self._conn.execute("ROLLBACK")

    def _check_started(self) -> None:
        if self._state != "started":
            raise _core.InterfaceError(f"the transaction is {self._state}, not started")

    async def __aenter__(self) -> Transaction:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.commit()
        else:
            await self.rollback()
