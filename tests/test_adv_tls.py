"""Adversity: TLS (scenario 13). A test CA and server certificate made with the openssl
CLI; the throwaway cluster serves them (ssl=on) for the length of the test."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from faults.checks import Timer

import agentdb

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed")


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_cluster(fault_cluster: Any, tmp_path: Any) -> Iterator[tuple[Any, str]]:
    """``fault_cluster`` with ssl=on and a certificate for ``localhost`` signed by a
    throwaway CA; yields (cluster, path of the CA certificate)."""
    d = str(tmp_path)
    _openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "2", "-subj", "/CN=agentdb test CA", cwd=d)
    _openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "other.key",
             "-out", "other.crt", "-days", "2", "-subj", "/CN=some other CA", cwd=d)
    _openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    # The server reads its key as its own user, mode 0600, from its data directory.
    for name in ("server.crt", "server.key"):
        dst = os.path.join(fault_cluster.datadir, name)
        shutil.copy(os.path.join(d, name), dst)
        os.chmod(dst, 0o600)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(dst, pw.pw_uid, pw.pw_gid)
    fault_cluster.settings.update(ssl="on", ssl_cert_file="server.crt", ssl_key_file="server.key")
    fault_cluster.restart()
    try:
        yield fault_cluster, os.path.join(d, "ca.crt")
    finally:
        for k in ("ssl", "ssl_cert_file", "ssl_key_file"):
            fault_cluster.settings.pop(k, None)
        fault_cluster.restart()


async def test_sslmode_require_against_a_server_without_tls(fault_cluster: Any) -> None:
    with Timer() as t:
        with pytest.raises(agentdb.OperationalError) as info:
            await agentdb.connect(fault_cluster.dsn() + "?sslmode=require", timeout=3)
    assert t.elapsed < 3 + 1.5
    assert "server does not support SSL" in str(info.value), str(info.value)
    conn = await agentdb.connect(fault_cluster.dsn() + "?sslmode=prefer", timeout=3)
    try:
        assert not conn.ssl_in_use()
    finally:
        await conn.close()


async def test_verify_full_with_a_test_ca(tls_cluster: tuple[Any, str]) -> None:
    cluster, ca = tls_cluster
    base = (f"hostaddr=127.0.0.1 port={cluster.port} user=postgres dbname=postgres "
            f"sslmode=verify-full sslrootcert={ca}")
    conn = await agentdb.connect(base + " host=localhost", timeout=5)
    try:
        assert conn.ssl_in_use()
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()
    # a pool over TLS too
    pool = await agentdb.create_pool(base + " host=localhost", pool_size=2, timeout=5)
    try:
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close(timeout=5)
    # the wrong host name: refused clearly
    with Timer() as t:
        with pytest.raises(agentdb.OperationalError) as info:
            await agentdb.connect(base + " host=wrong.name.example", timeout=5)
    assert t.elapsed < 5 + 1.5
    assert "does not match host name" in str(info.value), str(info.value)
    # an unknown CA: refused clearly
    with pytest.raises(agentdb.OperationalError) as info:
        await agentdb.connect(
            base.replace("ca.crt", "other.crt") + " host=localhost",
            timeout=5,
        )
    assert "certificate verify failed" in str(info.value), str(info.value)
