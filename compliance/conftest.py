"""SQLAlchemy's dialect compliance suite against postgresql+agentdb (run: compliance/run.sh).

The suite's requirements class is ``compliance/requirements.py``, named in ``setup.cfg``
(``[sqla_testing] requirement_cls = requirements:Requirements``); this directory is put on
``sys.path`` here so that the name resolves whatever pytest's import mode.
"""

import sys
from pathlib import Path

import pytest
from sqlalchemy.dialects import registry

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

registry.register("postgresql.agentdb", "agentdb.sqlalchemy", "AgentdbDialect")

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F401,F403

_sa_sessionstart = pytest_sessionstart  # noqa: F405 - SQLAlchemy's own, from the plugin


def pytest_sessionstart(session: pytest.Session) -> None:
    """SQLAlchemy's session start, then a warning filter.

    SQLAlchemy 2.1 warns (and the suite turns SAWarnings into errors) when a Computed
    column without ``persisted`` is created on PostgreSQL < 18, which has STORED columns
    only: the fixtures of ComputedColumnTest/ComputedReflectionTest do exactly that. The
    column is created all the same; let those tests run instead of erroring on the note."""
    import warnings

    from sqlalchemy.exc import SAWarning

    _sa_sessionstart(session)

    warnings.filterwarnings(
        "ignore",
        message=r"Computed column \S+ is being created as 'STORED'",
        category=SAWarning,
    )
