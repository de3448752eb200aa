"""Connection strings: the URLs users have, turned into libpq keywords, with secrets kept out."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
from typing import Any

from . import _core

# postgresql+asyncpg://, postgresql+psycopg://, postgresql+agentdb://: one driver here.
_DRIVER_SCHEME = re.compile(r"^(postgres(?:ql)?)\+[A-Za-z0-9_]+://")
_URL_PASSWORD = re.compile(r"^[a-z+]+://[^/?#@]*?:([^@/?#]*)@", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

# asyncpg-style keyword arguments and their libpq names.
_ALIASES = {"database": "dbname", "ssl": "sslmode"}


def normalize_url(dsn: str) -> str:
    """Drop a SQLAlchemy-style ``+driver`` from the scheme."""
    return _DRIVER_SCHEME.sub(r"\1://", dsn.strip())


def find_password(dsn: str) -> str | None:
    """The password written in a URL or keyword/value string, if any (for scrubbing)."""
    m = _URL_PASSWORD.match(dsn)
    if m and m.group(1):
        from urllib.parse import unquote

        return unquote(m.group(1))
    m = _KV_PASSWORD.search(dsn)
    if m:
        value = m.group(1)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        return value or None
    return None


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced."""
    if secret:
        text = text.replace(secret, "********")
        from urllib.parse import quote

        quoted = quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, "********")
    return text


def hide_password(dsn: str) -> str:
    """The connection string with its password replaced by ``********`` (for printing)."""
    return scrub(dsn, find_password(dsn))


def parse(dsn: str | None, overrides: dict[str, Any]) -> dict[str, str]:
    """libpq keywords from a connection string plus keyword arguments (which win)."""
    params: dict[str, str] = {}
    if dsn:
        text = normalize_url(dsn)
        scrubbed: Exception | None = None
        try:
            params = _core.parse_dsn(text)
        except _core.InterfaceError as e:
            scrubbed = _core.InterfaceError(scrub(str(e), find_password(text)))
        if scrubbed is not None:
            # raised outside the except block: libpq's text (which echoes the whole URI,
            # password included) must not survive as the new error's __context__
            raise scrubbed
    for key, value in overrides.items():
        if value is None:
            continue
        key = _ALIASES.get(key, key)
        if key == "server_settings":
            opts = " ".join(f"-c {k}={_escape_option(str(v))}" for k, v in value.items())
            params["options"] = f"{params.get('options', '')} {opts}".strip()
            continue
        if key == "sslmode" and isinstance(value, bool):
            value = "require" if value else "disable"
        params[key] = str(value)
    return params


def _escape_option(value: str) -> str:
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_port_pairs(params: dict[str, str]) -> list[tuple[str, str]] | None:
    """The (host, port) entries to resolve; ``None`` when libpq needs no addresses from us
    (``hostaddr`` given, or no host: libpq's default Unix socket)."""
    if "hostaddr" in params:
        return None
    hosts_text = params.get("host") or os.environ.get("PGHOST", "")
    if not hosts_text:
        return None
    hosts = hosts_text.split(",")
    ports_text = params.get("port") or os.environ.get("PGPORT", "")
    ports = ports_text.split(",") if ports_text else [""]
    if len(ports) == 1:
        ports = ports * len(hosts)
    if len(ports) != len(hosts):
        raise _core.InterfaceError(
            f"could not match {len(ports)} port numbers to {len(hosts)} hosts"
        )
    return list(zip(hosts, ports, strict=True))


def _fixed_address(host: str) -> str | None:
    """The ``hostaddr`` entry of a host that needs no lookup: ``""`` for none or a Unix
    socket (a directory, or ``@`` abstract), the address itself for an IP address;
    ``None`` for a host name."""
    if not host or host.startswith(("/", "@")):
        return ""
    return host if _is_ip(host) else None


def _with_addresses(
    params: dict[str, str], hosts: list[str], addrs: list[str], ports: list[str]
) -> dict[str, str]:
    resolved = dict(params)
    resolved["host"] = ",".join(hosts)
    resolved["hostaddr"] = ",".join(addrs)
    if any(ports):
        resolved["port"] = ",".join(ports)
    return resolved


def resolve_without_lookup(params: dict[str, str]) -> dict[str, str] | None:
    """``resolve_hosts(params)`` computed at once when no entry is a host name (IP
    addresses, Unix sockets, ``hostaddr`` given): the connect path of a pool pays for no
    task and no await; ``None`` when a name must be looked up."""
    pairs = _host_port_pairs(params)
    if pairs is None:
        return params
    addrs: list[str] = []
    for host, _port in pairs:
        fixed = _fixed_address(host)
        if fixed is None:
            return None
        addrs.append(fixed)
    hosts = [host for host, _port in pairs]
    return _with_addresses(params, hosts, addrs, [port for _host, port in pairs])


async def resolve_hosts(params: dict[str, str]) -> dict[str, str]:
    """Resolve host names with ``loop.getaddrinfo`` and hand libpq addresses as ``hostaddr``.

    libpq resolves names with a blocking call inside ``PQconnectPoll``; the loop must never
    block, so every name becomes one ``host``/``hostaddr`` entry per address (libpq tries them
    in order and still checks certificates against ``host``).
    """
    pairs = _host_port_pairs(params)
    if pairs is None:
        return params
    loop = asyncio.get_running_loop()
    out_hosts: list[str] = []
    out_addrs: list[str] = []
    out_ports: list[str] = []
    errors: list[str] = []
    for host, port in pairs:
        fixed = _fixed_address(host)
        if fixed is not None:
            out_hosts.append(host)
            out_addrs.append(fixed)
            out_ports.append(port)
            continue
        try:
            infos = await loop.getaddrinfo(
                host, int(port) if port.isdigit() else 5432, type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError) as e:
            errors.append(f'could not translate host name "{host}" to address: {e}')
            continue
        seen: set[str] = set()
        for _family, _type, _proto, _canon, sockaddr in infos:
            addr = str(sockaddr[0])
            if addr in seen:
                continue
            seen.add(addr)
            out_hosts.append(host)
            out_addrs.append(addr)
            out_ports.append(port)
    if not out_hosts:
        raise _core.OperationalError("; ".join(errors))
    return _with_addresses(params, out_hosts, out_addrs, out_ports)
