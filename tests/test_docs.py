"""The quickstart's files, taken from docs/quickstart.md, give a passing test suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import agentdb
from agentdb.testing.cluster import dsn_with_dbname

DOCS = Path(__file__).resolve().parent.parent / "docs"
AGENTDB_PATH = os.path.dirname(os.path.dirname(os.path.abspath(agentdb.__file__)))
FILE_BLOCK = re.compile(r"`(\w+\.(?:py|ini))`:\n\n```\w+\n(.*?)```", re.S)


def test_quickstart_files_pass(
    tmp_path: Path,
    pg_dsn: str,
    pg_admin_dsn: str,
    admin_sql: Callable[..., list[tuple[str, ...]]],
) -> None:
    text = (DOCS / "quickstart.md").read_text()
    files = dict(FILE_BLOCK.findall(text))
    assert set(files) == {"models.py", "app.py", "pytest.ini", "test_app.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    db = "agentdb_docs_quickstart"
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    admin_sql(pg_admin_dsn, f"CREATE DATABASE {db}")
    env = dict(os.environ, AGENTDB_TEST_DSN=dsn_with_dbname(pg_dsn, db))
    env.pop("DATABASE_URL", None)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONPATH"] = AGENTDB_PATH
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "agentdb.testing.plugin",
                "-p",
                "no:cacheprovider",
                "-W",
                "error",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_docs_name_only_existing_env_vars(page: str) -> None:
    """Every AGENTDB_* variable the docs mention is read somewhere in the package, the tests
    or the build (setup.py, packaging/: AGENTDB_LIBPQ_PREFIX, AGENTDB_CACHE_DIR...)."""
    root = DOCS.parent
    build = [root / "setup.py", *sorted((root / "packaging").glob("*.sh"))]
    sources = (
        "".join(p.read_text() for p in Path(agentdb.__file__).parent.rglob("*.py"))
        + (Path(__file__).parent / "conftest.py").read_text()
        + "".join(p.read_text() for p in build)
    )
    for var in set(re.findall(r"\bAGENTDB_[A-Z_]+\b", (DOCS / page).read_text())):
        assert var in sources, f"{page} mentions {var}, which nothing reads"
