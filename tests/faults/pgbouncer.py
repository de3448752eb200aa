"""Run Debian's pgbouncer (``apt-get install pgbouncer``) in front of a server, for tests."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from agentdb.testing.cluster import free_port, pg_isready

__all__ = ["PgBouncer", "find_pgbouncer"]


def find_pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


class PgBouncer:
    """pgbouncer on a free port of 127.0.0.1 forwarding every database to ``host:port``
    (trust auth), in ``pool_mode``. As root it runs as the ``postgres`` user."""

    def __init__(self, host: str, port: int, *, pool_mode: str = "transaction",
                 pool_size: int = 5) -> None:
        exe = find_pgbouncer()
        if exe is None:
            raise RuntimeError("pgbouncer not found: apt-get install pgbouncer")
        self.exe = exe
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="agentdb-pgbouncer-")
        self.ini = os.path.join(self.dir, "pgbouncer.ini")
        with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
            f.write('"postgres" ""\n')
        with open(self.ini, "w") as f:
            f.write(
                "[databases]\n"
                f"* = host={host} port={port}\n"
                "[pgbouncer]\n"
                "listen_addr = 127.0.0.1\n"
                f"listen_port = {self.port}\n"
                "unix_socket_dir =\n"
                "auth_type = trust\n"
                f"auth_file = {self.dir}/userlist.txt\n"
                f"pool_mode = {pool_mode}\n"
                f"default_pool_size = {pool_size}\n"
                "max_client_conn = 500\n"
                "ignore_startup_parameters = extra_float_digits,options\n"
                f"logfile = {self.dir}/pgbouncer.log\n"
                f"pidfile = {self.dir}/pgbouncer.pid\n"
            )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        cmd = [self.exe, self.ini]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            pw = pwd.getpwnam("postgres")
            for root, _dirs, files in os.walk(self.dir):
                for n in [root, *(os.path.join(root, x) for x in files)]:
                    os.chown(n, pw.pw_uid, pw.pw_gid)
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not pg_isready("127.0.0.1", self.port, timeout=1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                self.stop()
                raise RuntimeError(f"pgbouncer did not start: {out}{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "pgbouncer.log")) as f:
                return f.read()
        except OSError:
            return ""

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
