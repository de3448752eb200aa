"""Driver layer: ``connect(ssl=...)`` as asyncpg takes it, turned into libpq's keywords.

``ssl`` is a bool, an sslmode or an ``ssl.SSLContext``. libpq does its own TLS and cannot
take a Python SSLContext, so a context is read for what it asks and libpq is told the
same, never less: its verification (``verify_mode`` and ``check_hostname``) becomes the
sslmode, its CA certificates (those it holds, read with ``get_ca_certs``) a root
certificate file libpq reads while connecting, its minimum and maximum TLS versions
libpq's. What cannot be read from a context (client certificates loaded with
``load_cert_chain``, CAs in a ``capath`` directory not yet used, ciphers) is not guessed:
pass ``sslcert=``/``sslkey=``/``sslrootcert=`` keywords, which win. A context that
verifies but whose CAs cannot be read raises instead of connecting unverified.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Any

from . import _core

SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})

_TLS_VERSIONS = {
    ssl.TLSVersion.TLSv1: "TLSv1",
    ssl.TLSVersion.TLSv1_1: "TLSv1.1",
    ssl.TLSVersion.TLSv1_2: "TLSv1.2",
    ssl.TLSVersion.TLSv1_3: "TLSv1.3",
}


def ssl_keywords(value: Any, given: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """libpq keywords for ``connect(ssl=value)``, and the path of a temporary root
    certificate file to delete once connected (None without one). Keywords in ``given``
    (the caller's own ``sslmode``, ``sslrootcert``...) are left as they are."""
    if isinstance(value, bool):
        # asyncpg's ssl=True is a default context: the system's CAs, the host name checked
        value = ssl.create_default_context() if value else "disable"
    if isinstance(value, str):
        if value not in SSLMODES:
            raise _core.InterfaceError(
                f"ssl={value!r} is not an sslmode: use one of {sorted(SSLMODES)}, a bool "
                "or an ssl.SSLContext"
            )
        return {"sslmode": value}, None
    if not isinstance(value, ssl.SSLContext):
        raise TypeError(
            f"ssl must be a bool, an sslmode or an ssl.SSLContext, not {type(value).__name__}"
        )
    return _from_context(value, given)


def _from_context(ctx: ssl.SSLContext, given: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    out: dict[str, str] = {}
    verify = ctx.verify_mode != ssl.CERT_NONE
    if not verify:
        out["sslmode"] = "require"  # encrypted, the server unverified: what the context asks
    else:
        out["sslmode"] = "verify-full" if ctx.check_hostname else "verify-ca"
    for attr, keyword in (
        ("minimum_version", "ssl_min_protocol_version"),
        ("maximum_version", "ssl_max_protocol_version"),
    ):
        name = _TLS_VERSIONS.get(getattr(ctx, attr))
        if name is not None:
            out[keyword] = name
    rootcert = None
    if verify and "sslrootcert" not in given:
        cas = ctx.get_ca_certs(binary_form=True)
        if not cas:
            raise _core.InterfaceError(
                "the ssl.SSLContext verifies the server, but its CA certificates cannot be "
                "read (loaded from a capath directory?); libpq does its own TLS and needs "
                "them as a file: pass sslrootcert=<CA file> (or sslrootcert='system' for "
                "the system's CAs, libpq 16+) with the context"
            )
        rootcert = _write_cas(cas)
        out["sslrootcert"] = rootcert
    for key in list(out):
        if key in given:
            del out[key]  # the caller's own keyword wins
    return out, rootcert


def _write_cas(cas: list[bytes]) -> str:
    """The CAs as a PEM file only this process's user can read."""
    fd, path = tempfile.mkstemp(prefix="agentdb-ca-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            for der in cas:
                f.write(ssl.DER_cert_to_PEM_cert(der))
    except BaseException:
        os.unlink(path)
        raise
    return path
