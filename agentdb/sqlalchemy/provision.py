"""Test-suite provisioning for postgresql+agentdb: PostgreSQL's own."""

from sqlalchemy.dialects.postgresql.provision import *  # noqa: F401,F403
