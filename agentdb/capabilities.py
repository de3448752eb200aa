"""Driver layer: the libpq in use: its version and which of its newer paths the core takes.

As psycopg's ``Capabilities``: each flag is true when the core was compiled with the
feature (the ``LIBPQ_HAS_*`` macros of the libpq headers it was built against) and the
libpq loaded at run time has it (``PQlibVersion()`` of 17 or later).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _core


def libpq_version() -> int:
    """The version of the libpq in use, as ``PQlibVersion()`` reports it (180001 for 18.1)."""
    return _core.libpq_version()


@dataclass(frozen=True)
class LibpqCapabilities:
    """Which libpq 17+ paths the core takes (``agentdb.libpq_capabilities()``)."""

    #: ``PQsendPipelineSync``: statements queued together leave in one write.
    pipeline_sync: bool
    #: ``PQsetChunkedRowsMode``: ``fetch()`` decodes rows while the server still sends.
    chunked_rows: bool
    #: ``PQcancelStart``/``PQcancelPoll``: cancel requests run on the event loop (no
    #: thread) and over TLS when the connection uses it.
    async_cancel: bool
    #: ``PQsendClosePrepared``: statements leaving the statement cache are closed on the
    #: server (evicted, stale, ``clear_statement_cache()``).
    close_prepared: bool


def libpq_capabilities() -> LibpqCapabilities:
    """Which of libpq 17's features the core uses with the libpq loaded."""
    return LibpqCapabilities(**_core.libpq_capabilities())
