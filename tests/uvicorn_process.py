"""A service run by ``uvicorn`` in a process of its own, for tests that need the real
server (its logging, its signals): started, waited for, stopped, its output kept."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agentdb.testing.cluster import free_port


@dataclass
class Served:
    base: str  # http://127.0.0.1:port
    output: str = ""  # stdout and stderr together, once the process has ended
    returncode: int | None = None
    first: httpx.Response | None = field(default=None, repr=False)


@contextmanager
def uvicorn_process(
    app_dir: Path, app: str, env: Mapping[str, str], ready_path: str = "/health"
) -> Iterator[Served]:
    """``uvicorn --app-dir app_dir app`` on a free port, with ``env``; yields once
    ``ready_path`` answers (that first response is ``served.first``), and stops the
    server with SIGTERM on the way out (``served.output``, ``served.returncode``)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), app,
         "--host", "127.0.0.1", "--port", str(port)],
        env=dict(env),
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(base=f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                served.first = httpx.get(served.base + ready_path, timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        served.output, _ = proc.communicate(timeout=30)
        served.returncode = proc.returncode
