"""Dialect layer: the SQLAlchemy pool class whose connections come from agentdb's C pool.

SQLAlchemy's own pool does not stand in between: a SQLAlchemy checkout is a native
``Pool.acquire()`` and a SQLAlchemy "close" is ``Pool.release()`` (which never blocks and
rolls back an open transaction). ``pool_size``, ``max_overflow``, ``pool_timeout``,
``pool_recycle`` and ``pool_pre_ping`` given to ``create_async_engine`` size the C pool.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool
from sqlalchemy.util.concurrency import await_only, in_greenlet

import agentdb
from agentdb import errors as _errors

if TYPE_CHECKING:
    from agentdb.pool import Pool as NativePool

    from .dbapi import AgentdbAdaptConnection, AgentdbDBAPI


class AgentdbPool(NullPool):
    """A SQLAlchemy pool that delegates to one native pool per event loop.

    The native pool is created on the first checkout in a running loop (a pool belongs to
    the loop that made it); a checkout from another loop replaces it.
    """

    _is_asyncio = True  # type: ignore[assignment]

    def __init__(
        self,
        creator: Any,
        pool_size: int = 20,
        max_overflow: int = 10,
        timeout: float = 30.0,
        recycle: float = 3600.0,
        pre_ping: bool = True,
        use_lifo: bool = False,
        min_size: int = 0,
        **kw: Any,
    ) -> None:
        kw.pop("reset_on_return", None)
        super().__init__(creator, recycle=-1, pre_ping=False, **kw)
        self._native_args: dict[str, Any] = {
            "pool_size": max(int(pool_size), 1) if pool_size else 100,
            "max_overflow": max(int(max_overflow), 0),
            "pool_timeout": float(timeout),
            "pool_recycle": float(recycle) if recycle and recycle > 0 else 0.0,
            "pre_ping": bool(pre_ping),
            "min_size": min_size,
            # SQLAlchemy's semantics: a connection comes back rolled back, and session
            # state (what a "connect" event set, SET, temporary tables) stays with it.
            "reset": "transaction",
        }
        self._sa_args = {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "timeout": timeout,
            "recycle": recycle,
            "pre_ping": pre_ping,
            "use_lifo": use_lifo,
            "min_size": min_size,
        }
        self._native: NativePool | None = None
        dialect = kw.get("dialect")
        if dialect is not None:
            dialect._agentdb_pool_ref = weakref.ref(self)

    # -- the native pool ----------------------------------------------------

    def native_pool(self, connect_kwargs: dict[str, Any]) -> NativePool:
        """The native pool of the running loop, created when missing (inside a greenlet)."""
        native = self._current_native()
        if native is not None:
            return native
        return await_only(self.native_pool_async(connect_kwargs))

    def _current_native(self) -> NativePool | None:
        native = self._native
        if native is None:
            return None
        if native.get_loop() is asyncio.get_running_loop() and not native.is_closing():
            return native
        self._native = None
        try:
            native.terminate()
        except Exception:
            pass
        return None

    async def native_pool_async(self, connect_kwargs: dict[str, Any]) -> NativePool:
        """``native_pool`` for async code (outside a greenlet)."""
        native = self._current_native()
        if native is not None:
            return native
        native = await agentdb.create_pool(None, **self._native_args, **connect_kwargs)
        current = self._current_native()
        if current is not None:  # another task made one meanwhile
            native.terminate()
            return current
        self._native = native
        return native

    def checkout_native(
        self, dbapi: AgentdbDBAPI, connect_kwargs: dict[str, Any]
    ) -> AgentdbAdaptConnection:
        native = self.native_pool(connect_kwargs)
        try:
            conn = await_only(native.acquire())
        except _errors.PoolTimeout as e:
            raise sa_exc.TimeoutError(
                f"agentdb pool limit of size {self._native_args['pool_size']} overflow "
                f"{self._native_args['max_overflow']} reached, connection timed out, timeout "
                f"{self._native_args['pool_timeout']:.2f}",
                code="3o7r",
            ) from e
        except Exception as error:
            from .dbapi import AgentdbAdaptConnection

            AgentdbAdaptConnection._handle_exception_no_connection(dbapi, error)
        return dbapi.adapt_pooled(conn, native)

    def stats(self) -> dict[str, Any]:
        """The native pool's ``stats()`` (empty before the first checkout)."""
        return self._native.stats() if self._native is not None else {}

    # -- SQLAlchemy's Pool API --------------------------------------------

    def recreate(self) -> AgentdbPool:
        self.logger.info("Pool recreating")
        return self._recreate()

    def _recreate(self) -> AgentdbPool:
        args: dict[str, Any] = dict(self._sa_args)
        return self.__class__(
            self._creator,
            **args,
            logging_name=self._orig_logging_name,
            echo=self.echo,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )

    def dispose(self) -> None:
        """Close the native pool (gracefully inside a greenlet, at once otherwise)."""
        native, self._native = self._native, None
        if native is None:
            return
        if in_greenlet():
            try:
                if native.get_loop() is asyncio.get_running_loop():
                    # Checked-out connections get the grace period; connections still
                    # opening do not (Pool.close() would wait for them: a server that
                    # does not answer would hold the shutdown for the whole timeout).
                    busy = native.stats().get("in_use", 0) > 0
                    if busy:
                        await_only(native.close())
                    else:
                        await_only(native.close(timeout=0.2))
                    return
            except Exception:
                pass
        try:
            native.terminate()
        except Exception:
            pass

    def status(self) -> str:
        s = self.stats()
        return (
            f"AgentdbPool size: {s.get('size', 0)} in use: {s.get('in_use', 0)} "
            f"idle: {s.get('idle', 0)} waiting: {s.get('waiting', 0)}"
        )

    def size(self) -> int:
        return int(self._native_args["pool_size"])

    def checkedout(self) -> int:
        return int(self.stats().get("in_use", 0))

    def checkedin(self) -> int:
        return int(self.stats().get("idle", 0))

    def overflow(self) -> int:
        return int(self.stats().get("overflow", 0))

    def timeout(self) -> float:
        return float(self._native_args["pool_timeout"])
