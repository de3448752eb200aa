"""Testing layer: find PostgreSQL's binaries, run a throwaway cluster (no dependencies)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "ClusterError",
    "PostgresNotFound",
    "TempCluster",
    "admin_sql",
    "dsn_with_dbname",
    "find_bindir",
    "free_port",
    "LOCAL_DSN",
    "local_server_dsn",
    "pg_isready",
    "pid_alive",
]

INSTALL_HINT = (
    "PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found. "
    "On Debian/Ubuntu: apt-get install postgresql (server and client binaries); "
    "or point PG_BINDIR at a directory that holds them."
)

_SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")


class ClusterError(RuntimeError):
    """A throwaway cluster could not be created, started or stopped."""


class PostgresNotFound(ClusterError):
    """No PostgreSQL server binaries on this machine."""


def _has_tools(bindir: str, tools: Sequence[str]) -> bool:
    return all(os.access(os.path.join(bindir, t), os.X_OK) for t in tools)


def _version_key(path: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,); a name that is no number sorts last.
    name = os.path.basename(os.path.dirname(path))
    return tuple(int(p) for p in re.findall(r"\d+", name)) or (-1,)


def find_bindir(tools: Sequence[str] = _SERVER_TOOLS) -> str:
    """Return a directory holding every one of ``tools``.

    Looked for in order: ``$PG_BINDIR``, ``pg_config --bindir``,
    ``/usr/lib/postgresql/*/bin`` (newest version first), then ``PATH``.
    Raises PostgresNotFound, naming the Debian package, when none has them all.
    """
    candidates: list[str] = []
    env = os.environ.get("PG_BINDIR")
    if env:
        candidates.append(env)
    pg_config = shutil.which(os.environ.get("PG_CONFIG", "pg_config"))
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(out)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for c in candidates:
        if _has_tools(c, tools):
            return c
    # PATH last: each tool may come from a different directory (symlinks in
    # /usr/local/bin, say); take the real directory of the first one.
    first = shutil.which(tools[0])
    if first:
        real = os.path.dirname(os.path.realpath(first))
        for d in (real, os.path.dirname(first)):
            if _has_tools(d, tools):
                return d
    raise PostgresNotFound(INSTALL_HINT)


@functools.cache
def _tool(name: str) -> str:
    """Path of a client tool (psql, pg_isready): the server's bindir, then PATH."""
    with contextlib.suppress(PostgresNotFound):
        return os.path.join(find_bindir((name,)), name)
    found = shutil.which(name)
    if found is None:
        raise PostgresNotFound(
            f"{name} was not found. On Debian/Ubuntu: apt-get install postgresql-client "
            "(or postgresql, which brings it)."
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def pg_isready(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when a server at host:port accepts connections.

    Uses ``pg_isready`` when it is installed, else a plain TCP connect (which only
    proves that something listens).
    """
    try:
        exe = _tool("pg_isready")
    except PostgresNotFound:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            return False
    try:
        r = subprocess.run(
            [exe, "-q", "-h", host, "-p", str(port), "-t", str(max(1, int(timeout)))],
            capture_output=True,
            timeout=timeout + 5,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def local_server_dsn() -> str | None:
    """``LOCAL_DSN`` when a server on 127.0.0.1:5432 lets user postgres in, else None."""
    if not pg_isready("127.0.0.1", 5432):
        return None
    try:
        admin_sql(LOCAL_DSN, "SELECT 1", timeout=10)
    except (ClusterError, OSError):
        return None
    return LOCAL_DSN


def dsn_with_dbname(dsn: str, dbname: str) -> str:
    """``dsn`` naming database ``dbname`` instead (URL or ``key=value`` form)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(path="/" + dbname))
    kept = [kv for kv in dsn.split() if not kv.startswith("dbname=")]
    return " ".join([*kept, f"dbname={dbname}"])


def admin_sql(dsn: str, sql: str, *, timeout: float = 30.0) -> list[tuple[str, ...]]:
    """Run ``sql`` through the ``psql`` binary; return the rows as tuples of strings.

    Independent of the code under test, so tests can inspect the server
    (pg_stat_activity, say). NULL comes back as ``""``; values must not contain
    ``|`` or newlines. Raises ClusterError with psql's message on failure.
    """
    # -w: never prompt for a password (there is no terminal in CI; fail instead).
    cmd = [_tool("psql"), "-X", "-q", "-w", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"]
    cmd += ["-d", dsn, "-c", sql]
    env = dict(os.environ, PGCONNECT_TIMEOUT=str(max(2, int(timeout))))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise ClusterError(f"psql timed out after {timeout}s running {sql!r}") from e
    if r.returncode != 0:
        raise ClusterError(f"psql failed ({r.returncode}) running {sql!r}: {r.stderr.strip()}")
    return [tuple(line.split("|")) for line in r.stdout.splitlines() if line]


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state follows the parenthesised command name, which may hold spaces.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class TempCluster:
    """A PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1.

    Trust authentication for user ``postgres``; fsync off. As root, the directory
    belongs to the ``postgres`` user and initdb/pg_ctl run through ``runuser``.
    ``cleanup()`` (also at exit, and on leaving a ``with`` block) stops the server
    and removes the directory.
    """

    def __init__(
        self,
        settings: Mapping[str, str | int] | None = None,
        *,
        bindir: str | None = None,
        base_dir: str | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.settings: dict[str, str | int] = {"max_connections": 100}
        self.settings.update(settings or {})
        self.bindir = bindir or find_bindir()
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self._base_dir = base_dir
        self.root: str | None = None  # the temporary directory
        self._running = False
        self._as_user: str | None = "postgres" if os.geteuid() == 0 else None
        self._atexit_registered = False

    # -- paths ---------------------------------------------------------------

    @property
    def datadir(self) -> str:
        return os.path.join(self._root(), "data")

    @property
    def sockdir(self) -> str:
        return os.path.join(self._root(), "sock")

    @property
    def logfile(self) -> str:
        return os.path.join(self._root(), "server.log")

    @property
    def running(self) -> bool:
        return self._running

    def _root(self) -> str:
        if self.root is None:
            raise ClusterError("the cluster was not created: call start() first")
        return self.root

    # -- running the tools ---------------------------------------------------

    def _run(self, tool: str, *args: str, timeout: float = 120.0) -> str:
        cmd = [os.path.join(self.bindir, tool), *args]
        if self._as_user is not None:
            cmd = ["runuser", "-u", self._as_user, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env.get("LC_ALL") or "C.UTF-8"
        try:
            r = subprocess.run(
                cmd,
                cwd=self._root(),
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"{tool} timed out after {timeout}s{self._log_tail()}") from e
        if r.returncode != 0:
            raise ClusterError(
                f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}{self._log_tail()}"
            )
        return r.stdout

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                tail = f.readlines()[-lines:]
        except (OSError, ClusterError):
            return ""
        return "\nserver log (last lines):\n" + "".join(tail)

    # -- life cycle ----------------------------------------------------------

    def _create(self) -> None:
        base = self._base_dir or os.environ.get("AGENTDB_TEST_TMPDIR")
        if base is None and self._as_user is not None and os.path.isdir("/tmp"):
            base = "/tmp"  # $TMPDIR may be under /root, which postgres cannot enter
        self.root = tempfile.mkdtemp(prefix="agentdb-pg-", dir=base)
        os.mkdir(self.sockdir)
        if self._as_user is not None:
            try:
                pw = pwd.getpwnam(self._as_user)
            except KeyError as e:
                raise ClusterError(
                    "running as root, but there is no 'postgres' user to own the cluster "
                    "(apt-get install postgresql creates it)"
                ) from e
            for path in (self.root, self.sockdir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        if not self._atexit_registered:
            atexit.register(self.cleanup)
            self._atexit_registered = True
        self._run(
            "initdb",
            "-D",
            self.datadir,
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )

    def _write_settings(self) -> None:
        conf: dict[str, str | int] = {
            "listen_addresses": self.host,
            "port": self.port,
            "unix_socket_directories": self.sockdir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
        }
        conf.update(self.settings)
        lines = [f"{k} = '{str(v).replace(chr(39), chr(39) * 2)}'" for k, v in conf.items()]
        # postgresql.auto.conf is read last and wins; rewriting it keeps restarts idempotent.
        with open(os.path.join(self.datadir, "postgresql.auto.conf"), "w") as f:
            f.write("# written by agentdb.testing.cluster\n" + "\n".join(lines) + "\n")

    def start(self) -> TempCluster:
        """Create the cluster (first time) and start it; return when it accepts connections."""
        if self._running:
            return self
        if self.root is None:
            self._create()
        keep_port = self.port != 0
        last: ClusterError | None = None
        for _attempt in range(3):
            if not keep_port:
                self.port = free_port(self.host)
            self._write_settings()
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    self.datadir,
                    "-l",
                    self.logfile,
                    "-w",
                    "-t",
                    str(int(self.start_timeout)),
                    "start",
                    timeout=self.start_timeout + 10,
                )
            except ClusterError as e:
                last = e
                self._kill_postmaster()
                if keep_port and "in use" not in str(e):
                    break
                keep_port = False  # the port was taken between probe and bind: try another
                continue
            self._running = True
            self._wait_ready()
            return self
        raise last or ClusterError("the server did not start")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if pg_isready(self.host, self.port, timeout=2):
                return
            time.sleep(0.05)
        raise ClusterError(
            f"server on port {self.port} never accepted connections{self._log_tail()}"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``smart``, ``fast`` or ``immediate``); keep its files.

        Returns once the postmaster process is gone, not only its pid file.
        """
        pid = self._postmaster_pid()
        if pid is None:
            self._running = False
            return
        try:
            self._run(
                "pg_ctl", "-D", self.datadir, "-m", mode, "-w", "-t", "60", "stop", timeout=70
            )
        except ClusterError:
            pass
        if not _wait_gone(pid, 10.0):
            self._kill_postmaster(pid)
        self._running = False

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port."""
        self.stop(mode)
        self.start()

    def reload(self) -> None:
        """Make the server reread its configuration and pg_hba.conf; return once it has.

        The postmaster logs the reload and rereads pg_hba.conf before it accepts the
        next connection, so a connection made after this returns sees the new rules.
        """
        before = self._count_in_log("reloading configuration files")
        self._run("pg_ctl", "-D", self.datadir, "reload")
        deadline = time.monotonic() + 10
        while self._count_in_log("reloading configuration files") <= before:
            if time.monotonic() > deadline:
                raise ClusterError(f"the server did not log the reload{self._log_tail()}")
            time.sleep(0.01)

    def _count_in_log(self, text: str) -> int:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read().count(text)
        except OSError:
            return 0

    def set_hba(self, text: str) -> None:
        """Replace pg_hba.conf with ``text``; reload when running (else the next start reads it)."""
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        if self._running:
            self.reload()

    def reset_hba(self) -> None:
        """Back to trust for everyone over the socket and 127.0.0.1."""
        self.set_hba(
            "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
        )

    def dsn(self, dbname: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/dbname``."""
        if not self.port:
            raise ClusterError("the cluster has no port yet: call start() first")
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def sql(self, sql: str, dbname: str = "postgres") -> list[tuple[str, ...]]:
        """Run ``sql`` with psql over the cluster's unix socket (works whatever the hba)."""
        return admin_sql(f"host={self.sockdir} port={self.port} user=postgres dbname={dbname}", sql)

    def _postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError, ClusterError):
            return None

    def _kill_postmaster(self, pid: int | None = None) -> None:
        """Last resort: SIGQUIT (immediate shutdown), then SIGKILL, the postmaster."""
        pid = pid if pid is not None else self._postmaster_pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if _wait_gone(pid, wait):
                return

    def cleanup(self) -> None:
        """Stop the server (if running) and remove the directory. Safe to call twice."""
        if self.root is None:
            return
        try:
            self.stop("immediate")
        finally:
            self._kill_postmaster()
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self._running = False
            if self._atexit_registered:
                atexit.unregister(self.cleanup)
                self._atexit_registered = False

    def __enter__(self) -> TempCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<TempCluster {self.host}:{self.port} {state} {self.root}>"
