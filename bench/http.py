"""(f) the FastAPI service (``bench/service.py``) under an HTTP load generator: wrk when
installed, else ``bench/loadgen.py`` in another process. One service process per driver,
started once per case; trials interleave like the other workloads. CPU per request is the
service process's own (user + system, from /proc)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import time
from typing import Any

from . import util
from .drivers import Driver, NotAvailable
from .models import SETUP_SQL, TEARDOWN_SQL, agentdb_dialect_reason
from .workloads import Case, Prepared

CONNECTIONS = 50
PATH = "/agents?limit=10"
TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _wrk_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    return float(m.group(1)) * scale


async def _load(url: str, duration: float) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk:
        seconds = max(1, round(duration))
        proc = await asyncio.create_subprocess_exec(
            wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        text = out.decode()
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed: {err.decode()[-300:]}")
        if "Non-2xx" in text or "Socket errors" in text:
            raise RuntimeError(f"wrk saw errors: {text[-400:]}")
        n = int(re.search(r"(\d+) requests in", text).group(1))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
        p50 = re.search(r"50%\s+(\S+)", text)
        p99 = re.search(r"99%\s+(\S+)", text)
        return {"requests": n, "seconds": seconds, "rps": rps,
                "p50_ms": _wrk_ms(p50.group(1)) if p50 else float("nan"),
                "p99_ms": _wrk_ms(p99.group(1)) if p99 else float("nan"), "tool": "wrk"}
    cmd = util.python_module_cmd("bench.loadgen", url, "--connections", str(CONNECTIONS),
                                 "--duration", str(duration))
    proc = await asyncio.create_subprocess_exec(*cmd, env=util.child_env(),
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err.decode()[-300:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["tool"] = "bench.loadgen"
    return result


async def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited {proc.returncode}: "
                               f"{proc.stderr.read().decode()[-400:] if proc.stderr else ''}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
            raise RuntimeError(f"service answered {status.decode().strip()}")
        except OSError:
            await asyncio.sleep(0.1)
    raise TimeoutError("service did not start")


def cases_f(args: argparse.Namespace) -> list[Case]:
    async def prepare(driver: Driver) -> Prepared:
        if driver.name == "agentdb":
            reason = agentdb_dialect_reason()
            if reason:
                raise NotAvailable(reason)
        port = _free_port()
        cmd = util.python_module_cmd("bench.service", "--driver", driver.name, "--dsn",
                                     driver.dsn, "--port", str(port),
                                     *(["--uvloop"] if args.uvloop else []))
        proc = subprocess.Popen(cmd, env=util.child_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            await _wait_ready(port, proc)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        url = f"http://127.0.0.1:{port}{PATH}"

        async def trial(duration: float) -> dict[str, Any]:
            cpu0 = _cpu_seconds(proc.pid)
            r = await _load(url, duration)
            cpu = _cpu_seconds(proc.pid) - cpu0
            n = r["requests"]
            return {"ops": n, "rows": n * 10, "elapsed_s": r["seconds"], "cpu_s": cpu,
                    "qps": r["rps"], "rows_ps": r["rps"] * 10, "p50_ms": r["p50_ms"],
                    "p99_ms": r["p99_ms"], "cpu_us_per_op": cpu / n * 1e6 if n else float("nan"),
                    "cpu_us_per_row": float("nan"), "tool": r.get("tool")}

        async def close() -> None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        return Prepared([], close, trial)

    tool = "wrk" if shutil.which("wrk") else "bench.loadgen"
    return [Case("f", "f.http.agents10",
                 f"FastAPI GET {PATH} ({tool}, {CONNECTIONS} conns; CPU = service process)",
                 CONNECTIONS, prepare, setup_sql=SETUP_SQL, teardown_sql=TEARDOWN_SQL)]
