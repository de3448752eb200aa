"""SQLAlchemy's dialect compliance suite against postgresql+agentdb (run: compliance/run.sh)."""

import pytest
from sqlalchemy.dialects import registry

registry.register("postgresql.agentdb", "agentdb.sqlalchemy", "AgentdbDialect")

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F401,F403
