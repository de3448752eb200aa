"""The asyncio Future the C core hands out: it tells its owner when it is cancelled."""

from __future__ import annotations

import asyncio
from typing import Any


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
