"""A small HTTP/1.1 keep-alive load generator, used when wrk is not installed.

``python -m bench.loadgen URL --connections 50 --duration 3`` prints one JSON line:
requests, seconds, req/s, p50/p99 latency in ms. Run in its own process (like wrk), on
uvloop when available.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def client(host: str, port: int, path: str, deadline: float, lat: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    n = 0
    try:
        while True:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            t1 = time.perf_counter()
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n")[0].decode())
            lat.append(t1 - t0)
            n += 1
            if t1 >= deadline:
                return n
    finally:
        writer.close()


async def run(url: str, connections: int, duration: float) -> dict[str, float]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lat: list[float] = []
    t0 = time.perf_counter()
    counts = await asyncio.gather(*(client(parts.hostname or "127.0.0.1", parts.port or 80, path,
                                           t0 + duration, lat) for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    lat.sort()
    n = sum(counts)
    return {"requests": n, "seconds": elapsed, "rps": n / elapsed,
            "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen")
    ap.add_argument("url")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--duration", type=float, default=3.0)
    a = ap.parse_args()
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        print(json.dumps(runner.run(run(a.url, a.connections, a.duration))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
