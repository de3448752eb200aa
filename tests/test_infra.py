"""The test infrastructure itself: binaries, TempCluster, admin_sql, discovery, loop guard."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import conftest
import pytest

from agentdb.testing.cluster import (
    ClusterError,
    PostgresNotFound,
    TempCluster,
    admin_sql,
    dsn_with_dbname,
    find_bindir,
    local_server_dsn,
    pg_isready,
    pid_alive,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# -- binaries and DSNs ---------------------------------------------------------


def test_find_bindir_has_server_tools() -> None:
    bindir = find_bindir()
    for tool in ("initdb", "pg_ctl", "postgres"):
        assert os.access(os.path.join(bindir, tool), os.X_OK)


def test_missing_binaries_name_the_debian_package() -> None:
    with pytest.raises(PostgresNotFound, match="apt-get install postgresql"):
        find_bindir(("agentdb-no-such-tool",))


def test_dsn_with_dbname() -> None:
    assert (
        dsn_with_dbname("postgresql://u:p@h:5/postgres?sslmode=disable", "x")
        == "postgresql://u:p@h:5/x?sslmode=disable"
    )
    assert dsn_with_dbname("postgres://h", "x") == "postgres://h/x"
    assert dsn_with_dbname("host=h dbname=a user=u", "x") == "host=h user=u dbname=x"


def test_redact_hides_passwords() -> None:
    assert conftest.redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert conftest.redact("host=h password=secret") == "host=h password=***"
    assert conftest.redact("postgresql://u@h/db") == "postgresql://u@h/db"


# -- TempCluster -----------------------------------------------------------------


def test_temp_cluster_lifecycle() -> None:
    with TempCluster({"max_connections": 23}) as cluster:
        assert cluster.running
        port = cluster.port
        assert cluster.dsn() == f"postgresql://postgres@127.0.0.1:{port}/postgres"
        assert cluster.dsn("x").endswith(f":{port}/x")
        rows = admin_sql(cluster.dsn(), "SELECT current_setting('max_connections'), 1")
        assert rows == [("23", "1")]
        assert admin_sql(cluster.dsn(), "SHOW fsync") == [("off",)]
        # Reachable over its own socket directory, inside the temporary directory.
        assert cluster.sql("SELECT current_setting('unix_socket_directories')") == [
            (cluster.sockdir,)
        ]
        assert cluster.sockdir.startswith(str(cluster.root))

        pid = cluster._postmaster_pid()
        assert pid is not None and pid_alive(pid)
        cluster.restart()
        assert cluster.port == port
        assert admin_sql(cluster.dsn(), "SELECT 2") == [("2",)]

        cluster.stop()
        assert not cluster.running
        assert not pg_isready("127.0.0.1", port, timeout=1)
        cluster.start()
        assert cluster.port == port
        assert admin_sql(cluster.dsn(), "SELECT 3") == [("3",)]
        root = cluster.root
        pid = cluster._postmaster_pid()
    assert cluster.root is None and root is not None
    assert not os.path.exists(root)
    assert pid is not None and not pid_alive(pid)
    cluster.cleanup()  # twice is fine


def test_cleanup_of_a_never_started_cluster_is_harmless() -> None:
    cluster = TempCluster()
    cluster.cleanup()
    with pytest.raises(ClusterError):
        cluster.dsn()


def test_admin_sql_reports_sql_errors(pg_dsn: str) -> None:
    with pytest.raises(ClusterError, match="division by zero"):
        admin_sql(pg_dsn, "SELECT 1/0")


def test_set_hba_locks_out_and_reset_lets_in(fault_cluster: TempCluster) -> None:
    fault_cluster.set_hba("local all all trust\nhost all all 127.0.0.1/32 reject\n")
    with pytest.raises(ClusterError, match="pg_hba.conf rejects"):
        admin_sql(fault_cluster.dsn(), "SELECT 1")
    assert fault_cluster.sql("SELECT 1") == [("1",)]  # the socket still gets in
    fault_cluster.reset_hba()
    assert admin_sql(fault_cluster.dsn(), "SELECT 1") == [("1",)]


def test_fault_cluster_is_put_back_after_a_stop(fault_cluster: TempCluster) -> None:
    fault_cluster.stop("immediate")
    assert not pg_isready("127.0.0.1", fault_cluster.port, timeout=1)


def test_fault_cluster_runs_again(fault_cluster: TempCluster, pg_dsn: str) -> None:
    # Runs after the test above stopped it; the fixture started it again.
    assert admin_sql(fault_cluster.dsn(), "SELECT 1") == [("1",)]
    # pg_cluster is the suite's own, never the server the rest of the suite uses.
    assert fault_cluster.dsn() != pg_dsn


# -- discovery -------------------------------------------------------------------


def test_pg_dsn_is_the_dedicated_database(
    pg_dsn: str, admin_sql: Callable[[str, str], list[tuple[str, ...]]]
) -> None:
    assert admin_sql(pg_dsn, "SELECT current_database()") == [("agentdb_test",)]
    rows = admin_sql(
        pg_dsn,
        "SELECT datname FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    assert rows == [("agentdb_test",)]


def test_discovery_prefers_the_env_var(monkeypatch: pytest.MonkeyPatch, pg_admin_dsn: str) -> None:
    monkeypatch.setenv("AGENTDB_TEST_DSN", pg_admin_dsn)
    monkeypatch.setenv("AGENTDB_TEST_DBNAME", "agentdb_test_envvar")
    monkeypatch.setattr(conftest, "local_server_dsn", lambda: pytest.fail("probed 5432"))
    server = conftest.discover_server()
    try:
        assert server.source == "AGENTDB_TEST_DSN"
        assert server.cluster is None
        assert server.admin_dsn == pg_admin_dsn
        assert server.dsn == dsn_with_dbname(pg_admin_dsn, "agentdb_test_envvar")
        assert admin_sql(server.dsn, "SELECT current_database()") == [("agentdb_test_envvar",)]
    finally:
        admin_sql(pg_admin_dsn, "DROP DATABASE IF EXISTS agentdb_test_envvar")


def test_discovery_uses_localhost_5432_when_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTDB_TEST_DSN", raising=False)
    if local_server_dsn() is None:
        pytest.xfail("no usable server on 127.0.0.1:5432 here")  # the next test covers this
    server = conftest.discover_server()
    assert server.source == "127.0.0.1:5432"
    assert server.cluster is None
    assert server.dsn == "postgresql://postgres@127.0.0.1:5432/agentdb_test"


def test_discovery_falls_back_to_a_throwaway_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTDB_TEST_DSN", raising=False)
    monkeypatch.setattr(conftest, "local_server_dsn", lambda: None)
    server = conftest.discover_server()
    assert server.cluster is not None
    try:
        assert server.source == "throwaway cluster"
        assert server.dsn == server.cluster.dsn("agentdb_test")
        assert admin_sql(server.dsn, "SELECT current_database()") == [("agentdb_test",)]
    finally:
        root = server.cluster.root
        server.cluster.cleanup()
    assert root is not None and not os.path.exists(root)


# -- event loop -------------------------------------------------------------------


async def test_loop_is_uvloop_exactly_when_asked(request: pytest.FixtureRequest) -> None:
    loop = asyncio.get_running_loop()
    want_uvloop = conftest._use_uvloop(request.config)
    assert type(loop).__module__.startswith("uvloop") == want_uvloop
    assert loop.get_exception_handler() is conftest._record_loop_error


PYTESTER_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def _pytester_setup(pytester: pytest.Pytester) -> None:
    pytester.makeini(PYTESTER_INI)
    pytester.makeconftest((HERE / "conftest.py").read_text())


def test_guard_fails_a_test_whose_loop_logged_an_error(pytester: pytest.Pytester) -> None:
    _pytester_setup(pytester)
    pytester.makepyfile(
        """
        import asyncio

        async def test_callback_raises():
            loop = asyncio.get_running_loop()
            def boom():
                raise ValueError("boom in a callback")
            loop.call_soon(boom)
            await asyncio.sleep(0.01)

        async def test_task_exception_never_retrieved():
            async def fail():
                raise RuntimeError("lost in a task")
            task = asyncio.get_running_loop().create_task(fail())
            await asyncio.sleep(0.01)
            del task

        async def test_clean():
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        ["*event loop reported unhandled exceptions*", "*ValueError: boom in a callback*"]
    )
    result.stdout.fnmatch_lines(["*Task exception was never retrieved*RuntimeError: lost*"])


def test_uvloop_option_and_server_skips_fail(pytester: pytest.Pytester) -> None:
    _pytester_setup(pytester)
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        async def test_loop_type():
            assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")

        def test_skips_for_want_of_a_server():
            pytest.skip("no PostgreSQL server available")

        def test_other_skip_is_a_skip():
            pytest.skip("not on this platform")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--uvloop")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*may not skip for want of a server*"])
