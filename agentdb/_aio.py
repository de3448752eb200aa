"""Driver layer: asyncio glue: the C core's Future, a deadline that never swallows a cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

_T = TypeVar("_T")


class AgentFuture(asyncio.Future[Any]):
    """A Future whose ``cancel()`` notifies the connection or pool that issued it.

    A task cancelled while it awaits a query must cancel the query on the server; a task
    cancelled just after a pool handed it a connection must give that connection back.
    Both happen here, on the cancelling call, so the normal path pays for no callback.
    """

    __slots__ = ("_owner",)

    # No __init__: the C core creates these with the base initializer (no Python frame)
    # and sets ``_owner`` right after.
    _owner: Any

    def cancel(self, msg: Any = None) -> bool:
        owner = getattr(self, "_owner", None)
        if owner is None:
            return super().cancel(msg)
        self._owner = None
        if self.done():
            if not self.cancelled() and self.exception() is None:
                # Handed a result (a connection, say) that the task will now never see.
                owner._future_abandoned(self)
            return False
        cancelled = super().cancel(msg)
        owner._future_cancelled(self)
        return cancelled


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" in the log


async def wait_for(aw: Awaitable[_T], timeout: float | None) -> _T:
    """``await aw`` within ``timeout`` seconds (``None``: no limit), else ``TimeoutError``.

    ``asyncio.wait_for`` before Python 3.12 returns ``aw``'s result when the caller is
    cancelled just as ``aw`` finishes: the cancellation is lost (the caller's task goes on,
    or ends normally). Here a cancellation of the caller always propagates as
    ``CancelledError`` (``aw``'s result, if any, is dropped); ``aw`` is cancelled and waited
    for when the caller is cancelled or the time is up. An ``aw`` already done is returned
    without suspending (a pending cancellation then arrives at the caller's next await, as
    for any done future). The same code on every Python. Raises the builtin
    ``TimeoutError`` (on 3.10 not ``asyncio.TimeoutError``).
    """
    if timeout is None:
        return await aw
    inner = asyncio.ensure_future(aw)
    if not inner.done():
        try:
            await asyncio.wait((inner,), timeout=timeout)
        except asyncio.CancelledError:
            await _cancel_and_wait(inner)
            raise
        if not inner.done():
            await _cancel_and_wait(inner)
            if inner.cancelled():
                raise TimeoutError
    return inner.result()


async def _cancel_and_wait(inner: asyncio.Future[Any]) -> None:
    """Cancel ``inner`` and wait until it has ended (a second cancellation of the caller
    stops the wait, not ``inner``'s ending); its outcome is retrieved."""
    inner.add_done_callback(_retrieve)
    if inner.done():
        return
    inner.cancel()
    await asyncio.wait((inner,))
