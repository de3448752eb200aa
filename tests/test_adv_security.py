"""Security: passwords never in a repr, str, log line or exception (libpq's own error
texts included); ``.pgpass`` and ``PGPASSWORD`` behave as libpq documents."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

import agentdb

PW = "Sup3r-S3cret_pw"  # also looked for URL-quoted
ROLE = "adv_sec"


@pytest.fixture
def pw_cluster(fault_cluster: Any) -> Iterator[Any]:
    """The throwaway cluster with scram-sha-256 for every role but postgres."""
    fault_cluster.sql(f"DROP ROLE IF EXISTS {ROLE}")
    fault_cluster.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PW}'")
    fault_cluster.set_hba(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    yield fault_cluster


def _url(cluster: Any, pw: str = PW, db: str = "postgres", extra: str = "") -> str:
    return f"postgresql://{ROLE}:{pw}@127.0.0.1:{cluster.port}/{db}{extra}"


def _clean(text: str, *secrets: str) -> None:
    for s in (PW, *secrets):
        assert s not in text, text


async def test_password_absent_from_everything_users_see(
    pw_cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    conn = await agentdb.connect(_url(pw_cluster), timeout=5)
    try:
        seen += [repr(conn), str(conn)]
        assert await conn.fetchval("SELECT current_user") == ROLE
    finally:
        await conn.close()
    pool = await agentdb.create_pool(_url(pw_cluster), pool_size=2, timeout=5)
    try:
        seen += [repr(pool), str(pool), repr(pool.stats())]
        async with pool.acquire() as c:
            seen.append(repr(c))
    finally:
        await pool.close(timeout=5)
    # failures whose text libpq builds from the connection string
    bad_urls = [
        _url(pw_cluster, pw="wrong-" + PW),  # wrong password: the server's message
        _url(pw_cluster, db="no_such_db_sec"),
        f"postgresql://{ROLE}:{PW}@[::1/x",  # libpq echoes a malformed URI
        f"postgresql://{ROLE}:{PW}@127.0.0.1:{pw_cluster.port}/x?bogus_option=1",
        f"postgresql://{ROLE}:{PW}@127.0.0.1:{pw_cluster.port}/x?sslmode=nonsense",
        f"postgresql://{ROLE}:{PW}@127.0.0.1:notaport/x",
        f"postgresql://{ROLE}:{PW}@127.0.0.1:%zz/x",
        f"host=127.0.0.1 port={pw_cluster.port} user={ROLE} password={PW} dbname='unterminated",
        f"host=127.0.0.1 port={pw_cluster.port} user={ROLE} password={PW} badkeyword=1",
        f"postgresql://{ROLE}:{PW}@no-such-host.invalid/x",
        f"postgresql://{ROLE}:{PW}@127.0.0.1:1/x",
    ]
    for url in bad_urls:
        for make in (
            lambda u: agentdb.connect(u, timeout=3),
            lambda u: agentdb.create_pool(u, timeout=3),
        ):
            with pytest.raises((agentdb.Error, OSError, ValueError)) as info:
                await make(url)
            e = info.value
            seen += [str(e), repr(e), str(e.__cause__), str(e.__context__)]
            seen += [str(v) for v in vars(e).values()] if hasattr(e, "__dict__") else []
            for attr in ("detail", "hint", "server_message", "context"):
                seen.append(str(getattr(e, attr, "")))
    # keyword arguments too
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect(
            host="127.0.0.1", port=pw_cluster.port, user=ROLE, password="kw-" + PW, timeout=3
        )
    seen += [str(info.value), repr(info.value)]
    # the drop-in layer: settings, engine, check_database_connection's log
    from agentdb import settings
    from agentdb.settings import agentdb_url

    settings.configure(database_url=agentdb_url(_url(pw_cluster, pw="wrong-" + PW)))
    try:
        seen += [repr(settings.get_settings()), str(settings.get_settings())]
        seen += [repr(agentdb.get_engine()), repr(agentdb.get_engine().url)]
        assert await agentdb.check_database_connection(timeout=3) is False
    finally:
        await agentdb.close_db_connection()
        settings.reset()
    seen += [r.getMessage() for r in caplog.records]
    seen += [str(r.exc_info) for r in caplog.records if r.exc_info]
    from urllib.parse import quote

    text = "\n".join(seen)
    _clean(text, quote(PW, safe=""))
    assert "password authentication failed" in text  # the errors still say what failed


async def test_pgpassword_and_pgpass(
    pw_cluster: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq's order: a password in the connection string, else PGPASSWORD, else the
    password file (PGPASSFILE, ignored unless mode 0600)."""
    base = f"postgresql://{ROLE}@127.0.0.1:{pw_cluster.port}/postgres"
    monkeypatch.delenv("PGPASSWORD", raising=False)
    pgpass = tmp_path / "pgpass"
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    # nothing anywhere: the server asks, libpq has nothing to give
    with pytest.raises(agentdb.OperationalError, match="password"):
        await agentdb.connect(base, timeout=5)
    # PGPASSWORD
    monkeypatch.setenv("PGPASSWORD", PW)
    c = await agentdb.connect(base, timeout=5)
    assert await c.fetchval("SELECT current_user") == ROLE
    await c.close()
    # a password in the connection string wins over PGPASSWORD
    monkeypatch.setenv("PGPASSWORD", "wrong-env-pw")
    c = await agentdb.connect(_url(pw_cluster), timeout=5)
    await c.close()
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect(base, timeout=5)
    assert "wrong-env-pw" not in str(info.value) + repr(info.value)
    monkeypatch.delenv("PGPASSWORD")
    # the password file, 0600: used
    pgpass.write_text(f"127.0.0.1:{pw_cluster.port}:*:{ROLE}:{PW}\n")
    os.chmod(pgpass, 0o600)
    c = await agentdb.connect(base, timeout=5)
    assert await c.fetchval("SELECT current_user") == ROLE
    await c.close()
    pool = await agentdb.create_pool(base, pool_size=2, timeout=5)
    assert await pool.fetchval("SELECT 1") == 1
    await pool.close(timeout=5)
    # PGPASSWORD wins over the file
    monkeypatch.setenv("PGPASSWORD", "wrong-env-pw")
    with pytest.raises(agentdb.OperationalError):
        await agentdb.connect(base, timeout=5)
    monkeypatch.delenv("PGPASSWORD")
    # group/world readable: libpq ignores the file
    os.chmod(pgpass, 0o644)
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect(base, timeout=5)
    _clean(str(info.value) + repr(info.value))
    # a line for another port does not match
    pgpass.write_text(f"127.0.0.1:1:*:{ROLE}:{PW}\n")
    os.chmod(pgpass, 0o600)
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect(base, timeout=5)
    _clean(str(info.value) + repr(info.value))
