"""What libpq 16 and 17 bring for security, through agentdb's connection strings:
``require_auth`` (16), ``channel_binding=require`` with SCRAM over TLS (13), and
``sslnegotiation`` (17).

Every test runs under any libpq: with the one the wheel bundles (18, CI's wheel pass,
.ci/wheel.sh) it asserts what the keyword does; with an older one (the system's libpq 15,
the main pass) it asserts that the keyword is refused clearly, naming it, before any
connection is tried. Nothing is skipped.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

import agentdb

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed")

LIBPQ = agentdb.libpq_version()
ROLE = "sec_scram"
PW = "scram-Pw_42"


async def _refused(dsn: str, **kwargs: Any) -> Exception:
    """The error ``connect`` raises for ``dsn``; fails the test when it connects."""
    with pytest.raises((agentdb.OperationalError, agentdb.InterfaceError)) as info:
        conn = await agentdb.connect(dsn, timeout=5, **kwargs)
        await conn.close()
    return info.value


def _assert_unknown_keyword(err: Exception, keyword: str) -> None:
    """An older libpq's refusal: the keyword named, as an option it does not know."""
    text = str(err)
    assert keyword in text, text
    assert "invalid" in text, text


async def _assert_connects(dsn: str, user: str) -> None:
    conn = await agentdb.connect(dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT current_user") == user
    finally:
        await conn.close()


@pytest.fixture
def scram_role(fault_cluster: Any) -> Iterator[Any]:
    """The throwaway cluster with a role that logs in with a SCRAM password over TCP
    (TLS or not); user postgres keeps trust."""
    fault_cluster.sql(f"DROP ROLE IF EXISTS {ROLE}")
    fault_cluster.sql(f"SET password_encryption = 'scram-sha-256'; "
                      f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PW}'")
    fault_cluster.set_hba(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    yield fault_cluster


def _scram_url(cluster: Any, query: str) -> str:
    return f"postgresql://{ROLE}:{PW}@127.0.0.1:{cluster.port}/postgres?{query}"


async def test_require_auth_refuses_a_server_that_skips_authentication(
    fault_cluster: Any,
) -> None:
    """require_auth=scram-sha-256 against a trust server: libpq 16+ refuses the connection
    the server let in without a password; an older libpq refuses the keyword."""
    url = fault_cluster.dsn() + "?require_auth=scram-sha-256"
    err = await _refused(url)
    if LIBPQ >= 160000:
        assert isinstance(err, agentdb.OperationalError), repr(err)
        assert 'authentication method requirement "scram-sha-256" failed' in str(err), str(err)
        assert "server did not complete authentication" in str(err), str(err)
        # the same as a keyword argument
        err = await _refused(fault_cluster.dsn(), require_auth="scram-sha-256")
        assert "server did not complete authentication" in str(err), str(err)
        # and what the server does ask for (nothing) passes when allowed
        await _assert_connects(fault_cluster.dsn() + "?require_auth=none", "postgres")
    else:
        _assert_unknown_keyword(err, "require_auth")
        err = await _refused(fault_cluster.dsn(), require_auth="scram-sha-256")
        _assert_unknown_keyword(err, "require_auth")


async def test_require_auth_with_a_scram_server(scram_role: Any) -> None:
    """require_auth=scram-sha-256 lets a SCRAM login through; require_auth=md5 refuses the
    server's SASL request (libpq 16+)."""
    err = await _refused(_scram_url(scram_role, "require_auth=md5"))
    if LIBPQ < 160000:
        _assert_unknown_keyword(err, "require_auth")
        return
    assert 'authentication method requirement "md5" failed' in str(err), str(err)
    assert "server requested SASL authentication" in str(err), str(err)
    assert PW not in str(err)
    await _assert_connects(_scram_url(scram_role, "require_auth=scram-sha-256"), ROLE)
    await _assert_connects(_scram_url(scram_role, "require_auth=!password,!md5"), ROLE)


async def test_channel_binding_require_with_scram_over_tls(
    scram_role: Any, tls_cluster: tuple[Any, str]
) -> None:
    """channel_binding=require: SCRAM-SHA-256-PLUS over TLS connects; a server that lets the
    client in without SCRAM (trust) and a connection without TLS are refused."""
    cluster, ca = tls_cluster
    tls = f"sslmode=verify-full&sslrootcert={ca}&host=localhost&hostaddr=127.0.0.1"
    conn = await agentdb.connect(_scram_url(cluster, f"channel_binding=require&{tls}"), timeout=5)
    try:
        assert conn.ssl_in_use()
        assert await conn.fetchval("SELECT current_user") == ROLE
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()
    # trust for postgres: authenticated without channel binding, refused
    err = await _refused(f"{cluster.dsn()}?channel_binding=require&{tls}")
    assert "channel binding required" in str(err), str(err)
    # no TLS, nothing to bind to: refused
    err = await _refused(_scram_url(cluster, "channel_binding=require&sslmode=disable"))
    assert "channel binding" in str(err), str(err)
    assert PW not in str(err)


async def test_sslnegotiation(tls_cluster: tuple[Any, str]) -> None:
    """sslnegotiation (libpq 17): ``postgres`` is the classic SSLRequest handshake; ``direct``
    (TLS from the first byte, for 17+ servers) is refused with a weak sslmode by libpq,
    and a server older than 17 (the suite's) cannot answer it."""
    cluster, ca = tls_cluster
    base = f"postgresql://postgres@localhost:{cluster.port}/postgres?hostaddr=127.0.0.1"
    tls = f"sslrootcert={ca}&sslmode=verify-full"
    err = await _refused(f"{base}&sslnegotiation=direct&sslmode=prefer")
    if LIBPQ < 170000:
        _assert_unknown_keyword(err, "sslnegotiation")
        err = await _refused(f"{base}&{tls}", sslnegotiation="postgres")
        _assert_unknown_keyword(err, "sslnegotiation")
        return
    assert 'weak sslmode "prefer" may not be used with sslnegotiation=direct' in str(err), str(err)
    conn = await agentdb.connect(f"{base}&{tls}&sslnegotiation=postgres", timeout=5)
    try:
        assert conn.ssl_in_use()
    finally:
        await conn.close()
    server_version = int(cluster.sql("SHOW server_version_num")[0][0])
    if server_version < 170000:
        # The server reads the TLS ClientHello as a startup packet and hangs up: libpq
        # went straight to TLS (with sslnegotiation=postgres, above, the same server
        # and sslmode connect), and does not fall back.
        err = await _refused(f"{base}&{tls}&sslnegotiation=direct")
        assert isinstance(err, agentdb.OperationalError), repr(err)
        assert "SSL error" in str(err), str(err)
    else:
        await _assert_connects(f"{base}&{tls}&sslnegotiation=direct", "postgres")
