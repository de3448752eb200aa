"""Dialect layer: the SQLAlchemy pool class whose connections come from agentdb's C pool.

The C pool holds the physical connections and decides when they open, close, are
pinged and rolled back; SQLAlchemy keeps **one connection record per physical
connection**, attached to the native connection, so its pool events keep their meaning:
``connect`` fires once per physical connection (and again only after the C pool reset
its session), ``checkout``/``checkin`` once per use, ``record.info`` lives as long as the
connection, ``reset_on_return`` is honoured, ``invalidate()`` closes the connection.
``pool_size``, ``max_overflow``, ``pool_timeout``, ``pool_recycle`` and ``pool_pre_ping``
given to ``create_async_engine`` size and configure the C pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import Pool
from sqlalchemy.pool.base import _ConnectionRecord
from sqlalchemy.util.concurrency import await_only, in_greenlet

import agentdb
from agentdb import errors as _errors

if TYPE_CHECKING:
    from agentdb.connection import Connection
    from agentdb.pool import Pool as NativePool

    from .dbapi import AgentdbAdaptConnection, AgentdbDBAPI

# The native connection ``_do_get`` checked out for a record being connected: SQLAlchemy's
# record calls the engine's creator (``do_connect`` events, then ``dialect.connect()``),
# which takes it from here (one per task: greenlets share their task's context).
_handoff: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "agentdb_sa_handoff", default=None
)

# Attributes this pool keeps on a native connection and on a record.
_RECORD = "_agentdb_sa_record"  # native Connection -> its _ConnectionRecord
_EPOCH = "_agentdb_epoch"  # record: the connection's _session_epoch when it connected
_PENDING = "_agentdb_pending"  # record: the native connection it is about to connect with


class AgentdbPool(Pool):
    """A SQLAlchemy pool over one native pool per event loop.

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
        # Recycling and pings are the C pool's (pre_ping: a connection idle past its
        # ping_after is pinged, and anything the server sent an idle one, such as a
        # terminated backend's FATAL, is read before it is handed out): SQLAlchemy's own
        # checks would add a round trip per checkout.
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
            "reset_on_return": kw.get("reset_on_return", True),
        }
        self._native: NativePool | None = None
        # The records of this pool's connections (held by their native connections: one
        # the C pool closes on its own takes its record along).
        self._records: weakref.WeakSet[_ConnectionRecord] = weakref.WeakSet()
        self._connect_kwargs: dict[str, Any] | None = None
        self._sa_invoke_creator = self._invoke_creator
        self._invoke_creator = self._connect_record  # type: ignore[assignment]
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
        self._connect_kwargs = dict(connect_kwargs)
        native = await agentdb.create_pool(None, **self._native_args, **connect_kwargs)
        current = self._current_native()
        if current is not None:  # another task made one meanwhile
            native.terminate()
            return current
        self._native = native
        return native

    def _acquire(self, native: NativePool, dbapi: Any) -> Connection:
        try:
            return await_only(native.acquire())  # type: ignore[no-any-return]
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

    def checkout_native(
        self, dbapi: AgentdbDBAPI, connect_kwargs: dict[str, Any]
    ) -> AgentdbAdaptConnection:
        """``dialect.connect()``: the adapter of the native connection the record being
        connected was given (else of one checked out now, creating the native pool)."""
        conn = _handoff.get()
        if conn is not None:
            _handoff.set(None)
        else:
            conn = self._acquire(self.native_pool(connect_kwargs), dbapi)
        return dbapi.adapt_pooled(conn, self._native)  # type: ignore[arg-type]

    def stats(self) -> dict[str, Any]:
        """The native pool's ``stats()`` (empty before the first checkout)."""
        return self._native.stats() if self._native is not None else {}

    # -- records: one per physical connection ----------------------------------

    def _do_get(self) -> _ConnectionRecord:
        native = self._current_native()
        if native is None and self._connect_kwargs is None:
            # The very first checkout: the creator brings the connection arguments, makes
            # the native pool and checks a connection out (checkout_native).
            return _ConnectionRecord(self, connect=False)
        if native is None:
            assert self._connect_kwargs is not None
            native = self.native_pool(self._connect_kwargs)
        dbapi = self._dialect.loaded_dbapi  # type: ignore[union-attr]
        while True:
            conn = self._acquire(native, dbapi)
            rec: _ConnectionRecord | None = conn.__dict__.get(_RECORD)
            if rec is not None:
                adapt = rec.dbapi_connection
                if (
                    adapt is not None
                    and getattr(rec, _EPOCH, -1) == conn._session_epoch
                    and not rec._is_hard_or_soft_invalidated()
                ):
                    return rec
                del conn.__dict__[_RECORD]
                if adapt is not None and rec._is_hard_or_soft_invalidated():
                    # Invalidated with the pool (a disconnect elsewhere) or softly: as
                    # SQLAlchemy's pools do at checkout, close it and take another.
                    self._discard(rec)
                    continue
            # A physical connection new to SQLAlchemy (or whose session the C pool reset
            # since): a record of its own, connected by SQLAlchemy with it (the creator
            # finds it in _PENDING), so its "connect" events run now.
            rec = _ConnectionRecord(self, connect=False)
            setattr(rec, _PENDING, conn)
            return rec

    def _connect_record(self, rec: _ConnectionRecord) -> Any:
        """The record's creator: the engine's (``do_connect`` events, ``dialect.connect``)
        with the native connection ``_do_get`` chose for it."""
        conn: Connection | None = rec.__dict__.pop(_PENDING, None)
        token = _handoff.set(conn)
        try:
            adapt = self._sa_invoke_creator(rec)
        except BaseException:
            if conn is not None and _handoff.get() is not None:
                self._give_back(conn)  # the creator failed before taking it
            raise
        finally:
            _handoff.reset(token)
        native_conn = getattr(adapt, "_connection", None)
        if native_conn is not None and getattr(adapt, "_pool", None) is not None:
            native_conn.__dict__[_RECORD] = rec
            setattr(rec, _EPOCH, native_conn._session_epoch)
            self._records.add(rec)
        elif conn is not None:
            self._give_back(conn)  # a do_connect event made a connection of its own
        return adapt

    def _give_back(self, conn: Connection) -> None:
        native = self._native
        try:
            if native is not None and not conn.is_closed():
                native.release(conn)
            else:
                conn.terminate()
        except Exception:
            conn.terminate()

    def _discard(self, rec: _ConnectionRecord, terminate: bool = True) -> None:
        """Close a checked-in record's connection as SQLAlchemy's pools do when they
        recycle or dispose (a ``close`` event, then the connection closed, its slot freed)."""
        adapt = rec.dbapi_connection
        assert adapt is not None
        rec.dbapi_connection = None
        self._records.discard(rec)
        if self.dispatch.close:
            self.dispatch.close(adapt, rec)
        self._close_connection(adapt, terminate=terminate)

    def _do_return_conn(self, record: Any) -> None:
        conn = record.__dict__.pop(_PENDING, None)
        if conn is not None:  # connecting it failed before the creator took it
            self._give_back(conn)
        adapt = record.dbapi_connection
        if adapt is None:
            return  # invalidated, closed or detached: its connection is gone already
        native = getattr(adapt, "_pool", None)
        if native is None or native is not self._native:
            # Not from the native pool (a do_connect event's own), or back after dispose():
            # nothing keeps it.
            record.dbapi_connection = None
            self._close_connection(adapt)
            return
        adapt._check_in()

    # -- SQLAlchemy's Pool API --------------------------------------------

    def recreate(self) -> AgentdbPool:
        self.logger.info("Pool recreating")
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
        """Close the idle connections now (their ``close`` events fire) and the native
        pool with them; checked-out connections finish their work and are closed when they
        come back (gracefully inside a greenlet of the pool's loop; at once otherwise)."""
        native, self._native = self._native, None
        if native is None:
            return
        for rec in list(self._records):
            adapt = rec.dbapi_connection
            if not rec.in_use and adapt is not None and not adapt._connection.is_closed():
                self._discard(rec, terminate=False)
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
            f"AgentdbPool size: {s.get('pool_size', self.size())} "
            f"connections: {s.get('size', 0)} checked out: {s.get('in_use', 0)} "
            f"idle: {s.get('idle', 0)} overflow: {s.get('overflow', 0)} "
            f"waiting: {s.get('waiting', 0)}"
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

