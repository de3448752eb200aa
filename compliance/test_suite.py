"""Every test of ``sqlalchemy.testing.suite``."""

from sqlalchemy.testing.suite import *  # noqa: F401,F403
from sqlalchemy.testing.suite.test_results import ServerSideCursorsTest as _SSCursorsTest

_is_server_side = _SSCursorsTest._is_server_side


def _agentdb_is_server_side(self, cursor):  # type: ignore[no-untyped-def]
    """The suite tells server-side cursors apart by a list of driver names (its own TODO:
    "this prevents these tests from being usable by third party dialects") and answers
    False for any other driver. Ours carry ``server_side`` like the asyncpg adapter's."""
    if self.engine.dialect.driver == "agentdb":
        return bool(getattr(cursor, "server_side", False))
    return _is_server_side(self, cursor)


_SSCursorsTest._is_server_side = _agentdb_is_server_side
