"""TLS for the throwaway cluster: a test CA, a certificate for ``localhost`` signed by it (and
a second, unrelated CA) made with the openssl CLI, served with ssl=on while in use."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d: str) -> None:
    """ca.crt (the test CA), other.crt (another CA) and server.crt/server.key (CN and
    subjectAltName ``localhost``, signed by the test CA) in directory ``d``."""
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


@contextmanager
def serving_tls(cluster: Any, d: str) -> Iterator[str]:
    """``cluster`` (a TempCluster) restarted with ssl=on and the certificates made in ``d``;
    yields the test CA's path; ssl is off again (restart) on leaving."""
    make_certificates(d)
    # The server reads its key as its own user, mode 0600, from its data directory.
    for name in ("server.crt", "server.key"):
        dst = os.path.join(cluster.datadir, name)
        shutil.copy(os.path.join(d, name), dst)
        os.chmod(dst, 0o600)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(dst, pw.pw_uid, pw.pw_gid)
    cluster.settings.update(ssl="on", ssl_cert_file="server.crt", ssl_key_file="server.key")
    cluster.restart()
    try:
        yield os.path.join(d, "ca.crt")
    finally:
        for k in ("ssl", "ssl_cert_file", "ssl_key_file"):
            cluster.settings.pop(k, None)
        cluster.restart()
