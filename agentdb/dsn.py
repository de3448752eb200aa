"""Driver layer: connection strings: users' URLs as libpq keywords, with secrets kept out."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import pwd
import re
import socket
from typing import Any
from urllib.parse import quote, unquote

from . import _core

# A PostgreSQL URL's scheme as users write it: postgres:// or postgresql://, with a
# SQLAlchemy-style +driver (postgresql+asyncpg://, +psycopg, +agentdb: one driver here) or
# without, in any case (URL schemes are case-insensitive; libpq's are not).
_URL_SCHEME = re.compile(r"^(postgres(?:ql)?)(?:\+[A-Za-z0-9_]+)?://", re.IGNORECASE)

# Where a connection string writes a secret (the password, or sslpassword: the passphrase of
# the client's key). A URL: its user-info password, and password=/sslpassword= in its query
# (libpq takes any keyword there); a keyword/value string: those keywords' values, quoted or
# not (not "xpassword=": the keyword must start a word).
_ANY_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_URL_USERINFO_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#@:]*:([^@/?#]*)@", re.IGNORECASE)
_URL_QUERY_SECRET = re.compile(r"[?&]((?:ssl)?password)=([^&#]*)", re.IGNORECASE)
_KV_SECRET = re.compile(
    r"(?<![\w])((?:ssl)?password)\s*=\s*('(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE
)

#: The libpq keywords whose values are secrets (never shown, never logged).
SECRET_KEYWORDS = frozenset({"password", "sslpassword"})

#: What a secret is replaced by in a connection string shown to users (``hide_password``).
SHOWN_MASK = "***"
#: What a secret is replaced by in other text (``scrub``): the C core masks libpq's
#: connection errors the same way.
TEXT_MASK = "********"

# asyncpg-style keyword arguments and their libpq names.
_ALIASES = {"database": "dbname", "ssl": "sslmode"}


def split_url(dsn: str) -> tuple[str, str] | None:
    """``("postgresql", "u@h/db")`` for ``postgresql+asyncpg://u@h/db``: the scheme in lower
    case without its ``+driver``, and what follows ``://``; ``None`` when ``dsn`` is not a
    ``postgres://`` or ``postgresql[+driver]://`` URL (a keyword/value string, say)."""
    m = _URL_SCHEME.match(dsn)
    if m is None:
        return None
    return m.group(1).lower(), dsn[m.end() :]


def normalize_url(dsn: str) -> str:
    """``dsn`` as libpq takes it: a URL's SQLAlchemy-style ``+driver`` dropped and its scheme
    in lower case (``Postgresql+asyncpg://`` becomes ``postgresql://``); a keyword/value
    string as it is. Surrounding white space is stripped."""
    dsn = dsn.strip()
    parts = split_url(dsn)
    return dsn if parts is None else f"{parts[0]}://{parts[1]}"


def _secrets(dsn: str) -> list[tuple[str, int, int, str]]:
    """``(keyword, start, end, value)`` for each secret ``dsn`` writes: the keyword
    (``password`` or ``sslpassword``), where its value stands as written, and the value
    (percent-decoded in a URL, unquoted in a keyword/value string). Empty values are left
    out."""
    found: list[tuple[str, int, int, str]] = []
    if _ANY_URL.match(dsn):
        m = _URL_USERINFO_PASSWORD.match(dsn)
        if m:
            found.append(("password", m.start(1), m.end(1), unquote(m.group(1))))
        query = dsn.find("?")
        if query >= 0:
            for m in _URL_QUERY_SECRET.finditer(dsn, query):
                found.append((m.group(1).lower(), m.start(2), m.end(2), unquote(m.group(2))))
    else:
        for m in _KV_SECRET.finditer(dsn):
            value = m.group(2)
            if value.startswith("'"):
                value = re.sub(r"\\(.)", r"\1", value[1:-1] if value.endswith("'") else value[1:])
            found.append((m.group(1).lower(), m.start(2), m.end(2), value))
    return [s for s in found if s[3] and s[2] > s[1]]


def find_password(dsn: str) -> str | None:
    """The password written in a URL (user info or query) or keyword/value string, if any."""
    return next((value for key, _s, _e, value in _secrets(dsn) if key == "password"), None)


def hide_password(dsn: str) -> str:
    """The connection string with each secret it writes (password, sslpassword) replaced
    by ``***``, for showing: ``postgresql://app:***@db/app``, ``host=db password=***``.
    Only the secrets' places are masked: a user name equal to the password stays."""
    for _key, start, end, _value in sorted(_secrets(dsn), key=lambda s: s[1], reverse=True):
        dsn = dsn[:start] + SHOWN_MASK + dsn[end:]
    return dsn


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (and of its percent-encoded form)
    replaced by ``********``: for messages that may echo a connection string."""
    if secret:
        text = text.replace(secret, TEXT_MASK)
        quoted = quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, TEXT_MASK)
    return text


def scrub_dsn(text: str, dsn: str) -> str:
    """``text`` with the secrets that the connection string ``dsn`` writes scrubbed, each
    as written in ``dsn`` (``p%2bw``), as meant (``p+w``) and percent-encoded."""
    forms: set[str] = set()
    for _key, start, end, value in _secrets(dsn):
        forms.update((dsn[start:end], value))
    for secret in sorted(forms, key=len, reverse=True):
        text = scrub(text, secret)
    return text


def parse(dsn: str | None, overrides: dict[str, Any]) -> dict[str, str]:
    """libpq keywords from a connection string plus keyword arguments (which win).

    ``client_encoding`` is always ``UTF8`` (see ``_require_utf8``): a request for another
    encoding (keyword, URL query, ``server_settings``, ``options=-c client_encoding=...``)
    raises InterfaceError.
    """
    params: dict[str, str] = {}
    if dsn:
        text = normalize_url(dsn)
        scrubbed: Exception | None = None
        try:
            params = _core.parse_dsn(text)
        except _core.InterfaceError as e:
            scrubbed = _core.InterfaceError(scrub_dsn(str(e), text))
        if scrubbed is not None:
            # raised outside the except block: libpq's text (which echoes the whole URI,
            # password included) must not survive as the new error's __context__
            raise scrubbed
    for key, value in overrides.items():
        if value is None:
            continue
        key = _ALIASES.get(key, key)
        if key == "server_settings":
            for name, setting in value.items():
                if _guc_name(str(name)) == "client_encoding":
                    _require_utf8(str(setting), f"server_settings[{name!r}]")
            opts = " ".join(f"-c {k}={_escape_option(str(v))}" for k, v in value.items())
            params["options"] = f"{params.get('options', '')} {opts}".strip()
            continue
        if key == "sslmode" and isinstance(value, bool):
            value = "require" if value else "disable"
        params[key] = str(value)
    _check_client_encoding(params)
    params = expand_service(params)
    params["client_encoding"] = "UTF8"
    return params


# -- client_encoding: always UTF8 -------------------------------------------------
#
# The C core encodes every str it sends as UTF-8 and decodes every text it receives as
# UTF-8, so the server must convert to and from the database's encoding: client_encoding
# is UTF8 on every connection. libpq sends the keyword in the startup packet, where it
# outranks PGCLIENTENCODING (a default libpq only reads when the keyword is unset), role
# and database settings (ALTER ROLE/DATABASE ... SET: lower GUC sources than the
# client's) and ``-c`` switches in ``options`` (the server applies those first). So
# nothing but an explicit request can ask for another encoding, and that is an error.

# PostgreSQL's names for UTF8, after its clean_encoding_name() (lower case, letters and
# digits only): "UTF8", "utf-8", "Unicode"...
_UTF8_NAMES = frozenset({"utf8", "unicode"})

# The switches of a server process that take an argument (postgres.c's getopt string
# "B:bc:C:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:"): the next word is theirs.
_SWITCHES_WITH_ARGUMENT = frozenset("BcCDdfhkNprStvW-")


def _guc_name(name: str) -> str:
    # setting names are case-insensitive; "--client-encoding=x" means client_encoding
    return name.strip().replace("-", "_").lower()


def _require_utf8(value: str, where: str) -> None:
    cleaned = "".join(ch for ch in value.lower() if ch.isascii() and ch.isalnum())
    if cleaned in _UTF8_NAMES:
        return
    raise _core.InterfaceError(
        f"client_encoding {value!r} (from {where}) is not supported: agentdb talks UTF-8 "
        "to the server (client_encoding is UTF8 on every connection; the server converts "
        "to and from the database's encoding). Leave client_encoding out, or set it to UTF8."
    )


def _check_client_encoding(params: dict[str, str]) -> None:
    requested = params.get("client_encoding")
    if requested:  # an empty value is no value, for libpq too
        _require_utf8(requested, "the connection parameter client_encoding")
    options = params.get("options")
    if options:
        for name, value in _option_settings(options):
            if _guc_name(name) == "client_encoding":
                _require_utf8(value, f"options: {name}={value}")


def _option_settings(options: str) -> list[tuple[str, str]]:
    """The ``name=value`` settings that ``-c name=value``, ``-cname=value`` and
    ``--name=value`` switches in a libpq ``options`` string give the server."""
    words = _split_options(options)
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if len(word) < 2 or word[0] != "-":
            continue
        for pos in range(1, len(word)):  # clustered switches: -Fc name=value
            switch = word[pos]
            if switch not in _SWITCHES_WITH_ARGUMENT:
                continue
            argument = word[pos + 1 :]
            if not argument and i < len(words):
                argument = words[i]
                i += 1
            if switch in "c-":
                name, _, value = argument.partition("=")
                found.append((name, value))
            break
    return found


def _split_options(options: str) -> list[str]:
    """The words of an ``options`` string, as the server splits it (pg_split_opts):
    separated by white space, a backslash takes the next character literally."""
    words: list[str] = []
    current: list[str] = []
    escaped = in_word = False
    for ch in options:
        if escaped:
            current.append(ch)
            escaped = False
            in_word = True
        elif ch == "\\":
            escaped = in_word = True
        elif ch in " \t\n\r\v\f":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
    if in_word:
        words.append("".join(current))
    return words


# -- connection service files -----------------------------------------------------
#
# libpq reads a service (``service=name`` or PGSERVICE) inside PQconnectStartParams, after
# resolve_hosts() has run: a host name from the service file would reach PQconnectPoll
# unresolved and be resolved there with a blocking getaddrinfo() on the event loop. So the
# service is expanded here first, by libpq's rules (fe-connect.c, parseServiceInfo and
# parseServiceFile); its parameters become explicit ones and libpq, reading the same file
# again, finds nothing left to fill in.

_SERVICE_LINE_BUFFER = 1024  # libpq reads service files with fgets() into char[1024]
_WHITESPACE = b" \t\n\r\v\f"  # isspace() in the C locale


def expand_service(params: dict[str, str]) -> dict[str, str]:
    """``params`` with the parameters of its connection service filled in, as libpq does.

    The service is ``params["service"]``, else the PGSERVICE environment variable; its
    definition is read from PGSERVICEFILE, else ``~/.pg_service.conf``, and when the
    service is not there from ``pg_service.conf`` in PGSYSCONFDIR (else libpq's
    compiled-in ``_core.LIBPQ_SYSCONFDIR``). A parameter given explicitly (non-empty) wins
    over the file's. Errors are libpq's, word for word (OperationalError). ``params`` is
    returned unchanged when there is no service, when the service uses an LDAP lookup,
    or when libpq's system directory is unknown and the service is not in the user's file.
    """
    service = params.get("service") or None  # libpq ignores an empty value
    if service is None:
        service = os.environ.get("PGSERVICE")
    if service is None:
        return params
    settings: dict[str, str] = {}
    found = False
    user_file = params.get("servicefile") or os.environ.get("PGSERVICEFILE")  # servicefile: 18
    if user_file is None:
        home = _home_directory()
        if home is not None:
            candidate = f"{home}/.pg_service.conf"
            if _exists(candidate):
                user_file = candidate
    try:
        if user_file is not None:
            found = _read_service_file(user_file, service, settings)
        if not found:
            sysconfdir = os.environ.get("PGSYSCONFDIR")
            if sysconfdir is None:
                sysconfdir = _core.LIBPQ_SYSCONFDIR
                if not sysconfdir:
                    return params  # only libpq knows where to look
            system_file = f"{sysconfdir}/pg_service.conf"
            if _exists(system_file):
                found = _read_service_file(system_file, service, settings)
    except _LdapLookup:
        return params  # libpq does the lookup (and resolves that service's host itself)
    if not found:
        raise _core.OperationalError(f'definition of service "{service}" not found')
    expanded = dict(params)
    for key, value in settings.items():
        if not expanded.get(key):
            expanded[key] = value
    return expanded


class _LdapLookup(Exception):
    """The service's definition is an LDAP URL: left to libpq."""


def _home_directory() -> str | None:
    # pqGetHomeDirectory: $HOME when set and not empty (since libpq 15, not back-patched),
    # else the home directory of the effective user
    home = os.environ.get("HOME")
    if home and _core.libpq_version() >= 150000:
        return home
    try:
        return pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return None


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def _read_service_file(path: str, service: str, settings: dict[str, str]) -> bool:
    """Add the settings of ``[service]`` in the file at ``path`` to ``settings`` (the first
    value of a key wins); whether the file defines the service."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; open errors are libpq's
    except IsADirectoryError:
        return False  # fopen() succeeds on a directory and fgets() reads nothing
    except (OSError, ValueError):
        raise _core.OperationalError(f'service file "{path}" not found') from None
    name = service.encode()
    in_group = False
    with f:
        for linenr, chunk in enumerate(iter(lambda: f.readline(_SERVICE_LINE_BUFFER - 1), b""), 1):
            line = chunk.split(b"\0", 1)[0]  # C strings end at a NUL
            if len(line) >= _SERVICE_LINE_BUFFER - 1:
                raise _core.OperationalError(
                    f'line {linenr} too long in service file "{path}"'
                )
            line = line.strip(_WHITESPACE)
            if not line or line.startswith(b"#"):
                continue
            if line.startswith(b"["):
                if in_group:
                    return True  # the service's group ended
                in_group = line[1 : 1 + len(name)] == name and line[1 + len(name) :][:1] == b"]"
                continue
            if not in_group:
                continue
            if line.startswith(b"ldap"):
                raise _LdapLookup
            key, eq, value = line.partition(b"=")
            if not eq:
                raise _syntax_error(path, linenr)
            if key == b"service":
                raise _core.OperationalError(
                    "nested service specifications not supported in service file "
                    f'"{path}", line {linenr}'
                )
            keyword = key.decode("latin-1")
            if not _is_libpq_keyword(keyword):
                raise _syntax_error(path, linenr)
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:  # agentdb hands libpq str, as UTF-8
                raise _core.OperationalError(
                    f'invalid UTF-8 in service file "{path}", line {linenr}'
                ) from None
            settings.setdefault(keyword, text)
    return in_group


def _syntax_error(path: str, linenr: int) -> Exception:
    return _core.OperationalError(f'syntax error in service file "{path}", line {linenr}')


@functools.cache
def _is_libpq_keyword(key: str) -> bool:
    """Whether ``key`` is one of libpq's connection keywords (asked of libpq's parser)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
        return False
    try:
        parsed = _core.parse_dsn(f"{key}=x")
    except _core.InterfaceError:
        return False
    return list(parsed) == [key]  # not an alias (requiressl becomes sslmode)


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
