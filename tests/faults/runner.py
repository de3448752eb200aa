"""A private event loop kept between calls, for tests whose body runs many times
(hypothesis): ``asyncio.Runner``'s part that the tests use, which CPython 3.10 lacks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Runner:
    """``run(coro)`` on one loop until ``close()`` (the loop of the current policy: uvloop's
    under ``--uvloop``)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
