"""Dialect layer: SQLAlchemy's test provisioning for ``postgresql+agentdb``: PostgreSQL's own.

SQLAlchemy's testing plugin imports ``<the dialect's package>.provision`` for any suite run
on ``postgresql+agentdb`` (its compliance suite, its own tests, other libraries' suites), so
this hook lives in the dialect's package, not with the compliance configuration.
"""

from sqlalchemy.dialects.postgresql.provision import *  # noqa: F401,F403
