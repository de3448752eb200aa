"""Service files (service=, PGSERVICE): read by agentdb, their host names resolved on the loop."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import agentdb
import agentdb.sqlalchemy  # noqa: F401  (registers postgresql+agentdb)
from agentdb import _core
from agentdb import dsn as _dsn
from agentdb.testing.cluster import _tool

SERVICE = "agentdb_svc"


class Recording(agentdb.Connection):
    """A connection that keeps the libpq keywords it was opened with."""

    opened: list[dict[str, str]] = []

    def _connect(self, keys: list[str], values: list[str], *args: Any) -> Awaitable[Any]:
        sent = dict(zip(keys, values, strict=True))
        Recording.opened.append(sent)
        return super()._connect(keys, values, *args)


@pytest.fixture
def server(pg_dsn: str) -> dict[str, str]:
    parts = urlsplit(pg_dsn)
    return {
        "port": str(parts.port or 5432),
        "dbname": parts.path.lstrip("/") or "postgres",
        "user": parts.username or "postgres",
    }


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean libpq environment: no PG* variables, HOME and PGSYSCONFDIR in tmp_path."""
    for name in list(os.environ):
        if name.startswith("PG"):
            monkeypatch.delenv(name)
    (tmp_path / "home").mkdir()
    (tmp_path / "sysconf").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PGSYSCONFDIR", str(tmp_path / "sysconf"))
    Recording.opened = []
    yield tmp_path
    Recording.opened = []


def service_text(server: dict[str, str], name: str = SERVICE, **extra: str) -> str:
    settings = {"host": "localhost", **server, "application_name": "from_service", **extra}
    lines = [f"[{name}]"] + [f"{k}={v}" for k, v in settings.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_service_file(
    env: Path, monkeypatch: pytest.MonkeyPatch, text: str, name: str = "services.conf"
) -> Path:
    path = env / name
    path.write_text(text)
    monkeypatch.setenv("PGSERVICEFILE", str(path))
    return path


def record_getaddrinfo() -> list[str]:
    """Host names the running loop's getaddrinfo is asked for from now on."""
    loop = asyncio.get_running_loop()
    asked: list[str] = []
    original = loop.getaddrinfo

    async def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        return await original(host, *args, **kwargs)

    loop.getaddrinfo = recording  # type: ignore[method-assign]  (the test's own loop)
    return asked


def assert_resolved_by_agentdb(sent: dict[str, str], host: str = "localhost") -> None:
    hosts = sent["host"].split(",")
    addrs = sent.get("hostaddr", "").split(",")
    assert hosts and all(h == host for h in hosts), sent
    assert len(addrs) == len(hosts) and all(re.fullmatch(r"[0-9a-f.:]+", a) for a in addrs), sent


async def _settings(conn: agentdb.Connection) -> tuple[str, str, str]:
    row = await conn.fetchrow(
        "SELECT current_setting('application_name'), current_database(), current_user"
    )
    assert row is not None
    return (row[0], row[1], row[2])


# -- service= and PGSERVICE --------------------------------------------------------


@pytest.mark.parametrize("form", ["keyword/value", "URL", "keyword argument"])
async def test_service_in_the_dsn_is_resolved_on_the_loop(
    env: Path, monkeypatch: pytest.MonkeyPatch, server: dict[str, str], form: str
) -> None:
    write_service_file(env, monkeypatch, service_text(server))
    asked = record_getaddrinfo()
    dsn, kwargs = {
        "keyword/value": (f"service={SERVICE}", {}),
        "URL": (f"postgresql:///?service={SERVICE}", {}),
        "keyword argument": (None, {"service": SERVICE}),
    }[form]
    conn = await agentdb.connect(dsn, connection_class=Recording, timeout=10, **kwargs)
    try:
        assert await _settings(conn) == ("from_service", server["dbname"], server["user"])
    finally:
        await conn.close()
    assert "localhost" in asked
    [sent] = Recording.opened
    assert_resolved_by_agentdb(sent)
    assert sent["port"].split(",")[0] == server["port"]
    assert sent["service"] == SERVICE  # libpq reads it again and finds nothing left to set


async def test_pgservice_in_the_environment(
    env: Path, monkeypatch: pytest.MonkeyPatch, server: dict[str, str]
) -> None:
    write_service_file(env, monkeypatch, service_text(server))
    monkeypatch.setenv("PGSERVICE", SERVICE)
    asked = record_getaddrinfo()
    for dsn in (None, "", "service="):  # an empty service= is no service: PGSERVICE counts
        conn = await agentdb.connect(dsn, connection_class=Recording, timeout=10)
        try:
            assert await _settings(conn) == ("from_service", server["dbname"], server["user"])
        finally:
            await conn.close()
    assert "localhost" in asked
    assert len(Recording.opened) == 3
    for sent in Recording.opened:
        assert_resolved_by_agentdb(sent)
    pool = await agentdb.create_pool(min_size=1, pool_size=2, connection_class=Recording)
    try:
        assert await pool.fetchval("SELECT current_setting('application_name')") == "from_service"
    finally:
        await pool.close()
    assert_resolved_by_agentdb(Recording.opened[-1])


async def test_service_through_sqlalchemy(
    env: Path, monkeypatch: pytest.MonkeyPatch, server: dict[str, str]
) -> None:
    write_service_file(env, monkeypatch, service_text(server))
    engine = create_async_engine(
        f"postgresql+agentdb:///?service={SERVICE}",
        connect_args={"connection_class": Recording},
    )
    try:
        async with engine.connect() as c:
            name = await c.execute(sa.text("SELECT current_setting('application_name')"))
            assert name.scalar_one() == "from_service"
    finally:
        await engine.dispose()
    assert Recording.opened
    assert_resolved_by_agentdb(Recording.opened[0])


async def test_explicit_parameters_win_over_the_service(
    env: Path, monkeypatch: pytest.MonkeyPatch, server: dict[str, str]
) -> None:
    text = service_text(
        server, port="1", dbname="no_such_db_in_service", application_name="from_service"
    )
    write_service_file(env, monkeypatch, text)
    monkeypatch.setenv("PGHOST", "no-such-host.invalid")  # the service's host outranks it
    monkeypatch.setenv("PGAPPNAME", "from_environment")  # so does the service's value
    conn = await agentdb.connect(
        f"service={SERVICE} port={server['port']}",
        database=server["dbname"],
        connection_class=Recording,
        timeout=10,
    )
    try:
        assert await _settings(conn) == ("from_service", server["dbname"], server["user"])
    finally:
        await conn.close()
    conn = await agentdb.connect(
        f"postgresql://{server['user']}@/{server['dbname']}?service={SERVICE}",
        port=server["port"],
        application_name="explicit",
        connection_class=Recording,
        timeout=10,
    )
    try:
        assert await _settings(conn) == ("explicit", server["dbname"], server["user"])
    finally:
        await conn.close()
    for sent in Recording.opened:
        assert_resolved_by_agentdb(sent)
        assert sent["dbname"] == server["dbname"]
    # an explicit host: the service's is not used at all
    conn = await agentdb.connect(
        f"service={SERVICE} host=127.0.0.1 port={server['port']} dbname={server['dbname']}",
        connection_class=Recording,
        timeout=10,
    )
    await conn.close()
    assert Recording.opened[-1]["host"] == "127.0.0.1"


async def test_user_file_before_system_file(
    env: Path, monkeypatch: pytest.MonkeyPatch, server: dict[str, str]
) -> None:
    (env / "home" / ".pg_service.conf").write_text(
        service_text(server, application_name="from_home")
    )
    (env / "sysconf" / "pg_service.conf").write_text(
        service_text(server, application_name="from_system")
        + service_text(server, name="only_in_system", application_name="from_system")
    )

    async def application_name(service: str) -> str:
        conn = await agentdb.connect(f"service={service}", connection_class=Recording, timeout=10)
        try:
            return (await _settings(conn))[0]
        finally:
            await conn.close()
            assert_resolved_by_agentdb(Recording.opened[-1])

    assert await application_name(SERVICE) == "from_home"  # ~/.pg_service.conf first
    assert await application_name("only_in_system") == "from_system"
    # PGSERVICEFILE replaces ~/.pg_service.conf; PGSYSCONFDIR's file still comes after it
    write_service_file(env, monkeypatch, service_text(server, name="other"))
    assert await application_name(SERVICE) == "from_system"
    write_service_file(env, monkeypatch, service_text(server, application_name="from_file"))
    assert await application_name(SERVICE) == "from_file"


def test_libpq_sysconfdir_is_libpqs_own() -> None:
    """``_core.LIBPQ_SYSCONFDIR`` is the directory compiled into the libpq agentdb loaded."""
    sysconfdir = _core.LIBPQ_SYSCONFDIR
    assert isinstance(sysconfdir, str) and sysconfdir.startswith("/")
    with open("/proc/self/maps") as maps:
        libs = {line.split()[-1] for line in maps if "libpq.so" in line}
    assert libs, "libpq is not mapped"
    for lib in libs:
        assert sysconfdir.encode() + b"\0" in Path(lib).read_bytes()


# -- errors -------------------------------------------------------------------------


async def test_missing_service_is_a_clear_error(
    env: Path, monkeypatch: pytest.MonkeyPatch, server: dict[str, str]
) -> None:
    write_service_file(env, monkeypatch, service_text(server))
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect("service=no_such_service", connection_class=Recording, timeout=10)
    assert str(info.value) == 'definition of service "no_such_service" not found'
    monkeypatch.setenv("PGSERVICE", "nor_this_one")
    with pytest.raises(agentdb.OperationalError, match='service "nor_this_one" not found'):
        await agentdb.connect(connection_class=Recording, timeout=10)
    assert Recording.opened == []  # found out before libpq was called


BAD_FILES = {
    "no equals sign": "[{s}]\nhost\n",
    "spaces around =": "[{s}]\nhost = localhost\n",
    "unknown keyword": "[{s}]\nhost=localhost\nno_such_keyword=1\n",
    "an alias is not a keyword": "[{s}]\nrequiressl=1\n",
    "nested service": "[{s}]\nservice=other\n",
    "line too long": "[{s}]\napplication_name=" + "x" * 1010 + "\n",
}


def _psql_error(env_vars: dict[str, str], conninfo: str) -> str:
    r = subprocess.run(
        [_tool("psql"), "-X", "-w", "-At", "-c", "SELECT 1", conninfo],
        capture_output=True,
        text=True,
        env=env_vars,
        timeout=30,
    )
    assert r.returncode != 0, r.stdout
    return r.stderr.strip().removeprefix("psql: error: ")


@pytest.mark.parametrize("text", list(BAD_FILES.values()), ids=list(BAD_FILES))
async def test_service_file_errors_are_libpqs(
    env: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    write_service_file(env, monkeypatch, text.format(s=SERVICE))
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect(f"service={SERVICE}", connection_class=Recording, timeout=10)
    assert str(info.value) == _psql_error(dict(os.environ), f"service={SERVICE}")
    assert Recording.opened == []


async def test_missing_service_file_is_libpqs_error(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSERVICEFILE", str(env / "absent.conf"))
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect(f"service={SERVICE}", connection_class=Recording, timeout=10)
    assert str(info.value) == f'service file "{env / "absent.conf"}" not found'
    assert str(info.value) == _psql_error(dict(os.environ), f"service={SERVICE}")
    assert Recording.opened == []


async def test_service_password_never_shows(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "Sekr1t-svc-pw"
    # the server's error names the database, and this database's name holds the password
    text = service_text(server, password=secret, dbname=f"no_such_db_{secret}")
    write_service_file(env, monkeypatch, text)
    caplog.set_level(logging.INFO, logger="agentdb")
    with pytest.raises(agentdb.Error) as info:
        await agentdb.connect(f"service={SERVICE}", connection_class=Recording, timeout=10)
    shown = str(info.value) + repr(info.value) + caplog.text
    assert "does not exist" in str(info.value)
    assert secret not in shown
    assert_resolved_by_agentdb(Recording.opened[0])


# -- libpq's file syntax, read the way libpq reads it --------------------------------


def test_file_syntax_matches_libpq(
    env: Path, monkeypatch: pytest.MonkeyPatch, server: dict[str, str]
) -> None:
    text = (
        "# a comment\n"
        "\n"
        f"[{SERVICE}x]\n"
        "host=no-such-host.invalid\n"
        f"  [{SERVICE}] trailing words after the bracket are ignored  \n"
        "   # an indented comment\n"
        "\thost=localhost\t \r\n"
        f"port={server['port']}\n"
        f"dbname={server['dbname']}\n"
        f"user={server['user']}\n"
        "application_name=  two words = one value  \n"
        "application_name=the first value wins\n"
        f"[{SERVICE}]\n"
        "port=1\n"
    )
    path = write_service_file(env, monkeypatch, text)
    expanded = _dsn.expand_service({"service": SERVICE})
    assert expanded == {
        "service": SERVICE,
        "host": "localhost",
        "port": server["port"],
        "dbname": server["dbname"],
        "user": server["user"],
        "application_name": "  two words = one value",
    }
    sql = "SELECT '[' || current_setting('application_name') || ']'"
    r = subprocess.run(
        [_tool("psql"), "-X", "-w", "-At", "-c", sql, f"service={SERVICE}"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=30,
    )
    assert r.stdout.strip() == "[  two words = one value]", (r.stderr, path)


def test_ldap_services_are_left_to_libpq(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_service_file(
        env,
        monkeypatch,
        f"[{SERVICE}]\nldap://ldap.invalid/dc=x?y?one?(cn=z)\nhost=localhost\n",
    )
    params = {"service": SERVICE, "user": "u"}
    assert _dsn.expand_service(params) == params


def test_no_service_no_change(env: Path) -> None:
    params = {"host": "h", "service": ""}
    assert _dsn.expand_service(params) is params
