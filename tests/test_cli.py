"""``python -m agentdb``: check and init-db."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import agentdb
from agentdb import cli, settings
from agentdb.testing.cluster import dsn_with_dbname, free_port

AdminSQL = Callable[..., list[tuple[str, ...]]]
AGENTDB_PATH = os.path.dirname(os.path.dirname(os.path.abspath(agentdb.__file__)))


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings.reset()
    yield
    settings.reset()


def with_password(dsn: str, password: str) -> str:
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)


def test_check_ok(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = with_password(pg_dsn, "s3cr3t-pw")  # trust auth: the password is not needed
    assert cli.main(["check", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "agentdb check: ok" in out
    assert "PostgreSQL 1" in out and "latency:" in out and "tls:      no" in out
    assert "pool_size=20 max_overflow=10" in out
    assert "postgres:***@" in out and "s3cr3t-pw" not in out


def test_check_json_from_database_url(
    pg_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_dsn.replace("postgresql://", "postgresql+asyncpg://"))
    monkeypatch.setenv("AGENTDB_POOL_SIZE", "7")
    settings.reset()
    assert cli.main(["check", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ok"] is True
    assert r["tls"] is False
    assert r["server_version_num"] >= 100000
    assert isinstance(r["server_version"], str)
    assert 0 < r["latency_ms"] < 1000
    assert r["pool"]["pool_size"] == 7
    assert r["url"].startswith("postgresql+asyncpg://")
    assert r["database"] == pg_dsn.rsplit("/", 1)[1]


def test_check_fails_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/postgres"
    assert cli.main(["check", "--url", url, "--json", "--timeout", "3"]) == 1
    out = capsys.readouterr().out
    r = json.loads(out)
    assert r["ok"] is False and r["error_type"] == "OperationalError"
    assert "hunter2" not in out
    assert cli.main(["check", "--url", url, "--timeout", "3"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "hunter2" not in out


def test_check_wrong_password_is_hidden(
    pg_admin_dsn: str, admin_sql: AdminSQL, capsys: pytest.CaptureFixture[str]
) -> None:
    # a database that does not exist: the failure is reported, the password never
    url = with_password(pg_admin_dsn, "pa55word-xyz").rsplit("/", 1)[0] + "/no_such_db_cli"
    assert cli.main(["check", "--url", url]) == 1
    out = capsys.readouterr().out
    assert "pa55word-xyz" not in out and "no_such_db_cli" in out


def test_init_db(
    pg_dsn: str,
    pg_admin_dsn: str,
    admin_sql: AdminSQL,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = "agentdb_cli_initdb"
    admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    (tmp_path / "cli_models.py").write_text(
        "from sqlalchemy import Column, Integer, MetaData, Table\n"
        "meta = MetaData()\n"
        "Table('cli_t1', meta, Column('id', Integer, primary_key=True))\n"
        "Table('cli_t2', meta, Column('id', Integer, primary_key=True))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    url = dsn_with_dbname(pg_dsn, db)
    try:
        assert cli.main(["init-db", "cli_models:meta", "--url", url]) == 0
        assert "2 tables ready" in capsys.readouterr().out
        rows = admin_sql(
            url, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'cli_t%' ORDER BY 1"
        )
        assert rows == [("cli_t1",), ("cli_t2",)]
        assert cli.main(["init-db", "cli_models:meta", "--url", url]) == 0  # idempotent
    finally:
        admin_sql(pg_admin_dsn, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_init_db_bad_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["init-db", "nocolon"]) == 1
    assert "module:attr" in capsys.readouterr().err
    assert cli.main(["init-db", "no_such_module_xyz:meta"]) == 1
    assert cli.main(["init-db", "os:path"]) == 1
    assert "not a SQLAlchemy MetaData" in capsys.readouterr().err


def test_load_metadata_follows_metadata_attribute() -> None:
    from sqlmodel import SQLModel

    assert cli.load_metadata("sqlmodel:SQLModel") is SQLModel.metadata
    assert cli.load_metadata("sqlmodel:SQLModel.metadata") is SQLModel.metadata


def _run_module(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = os.environ.get("PYTHONPATH")
    full_env = dict(os.environ, **env)
    full_env["PYTHONPATH"] = AGENTDB_PATH + (os.pathsep + path if path else "")
    # From a neutral directory: the checkout's agentdb/ must not shadow the package.
    return subprocess.run(
        [sys.executable, "-m", "agentdb", *args],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env=full_env,
        timeout=60,
    )


def test_python_dash_m(pg_dsn: str) -> None:
    ok = _run_module("check", env={"DATABASE_URL": pg_dsn})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "agentdb check: ok" in ok.stdout
    bad = _run_module("check", "--json", "--url", f"postgresql://127.0.0.1:{free_port()}/x", env={})
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["ok"] is False
    usage = _run_module(env={})
    assert usage.returncode == 2 and "check" in usage.stderr
