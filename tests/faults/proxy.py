"""A TCP fault proxy in its own thread (stdlib only: sockets and selectors, no asyncio).

It sits between the code under test and PostgreSQL and can, at any moment:

- ``pass_through()`` / ``restore()``: forward traffic both ways (the default);
- ``silent()``: a half-open link in both directions: nothing is forwarded, nothing is
  closed, no RST and no FIN; new connections wait in the listen backlog (the kernel
  completes their handshake, nobody answers);
- ``reset()``: every existing link is closed with an RST (``SO_LINGER`` 0) on both sides;
  new connections are accepted and reset at once, until ``restore()``;
- ``latency(seconds)``: every chunk is delivered ``seconds`` late (both directions).

``restore()`` goes back to forwarding; data held while silent is then delivered.
"""

from __future__ import annotations

import collections
import selectors
import socket
import struct
import threading
import time
from typing import Any

__all__ = ["FaultProxy"]

_CHUNK = 65536
_HIGH_WATER = 4 * 1024 * 1024  # stop reading a side whose peer has this much queued


class _Link:
    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        # data waiting to be written to each socket: deque of (due time, bytes)
        self.out: dict[socket.socket, collections.deque[tuple[float, bytes]]] = {
            client: collections.deque(),
            server: collections.deque(),
        }
        self.closed = False

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.server if sock is self.client else self.client

    def queued(self, sock: socket.socket) -> int:
        return sum(len(b) for _, b in self.out[sock])


def _rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` with switchable faults."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._mode = "pass"
        self._delay = 0.0
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._commands: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = False
        self._done = threading.Event()
        self.accepted = 0  # connections accepted so far
        self.dsn = ""  # set by the fault_proxy fixture: the suite's database through it
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()

    # -- control (any thread) ---------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def links(self) -> int:
        """Links currently open (client side not yet closed)."""
        with self._lock:
            return sum(1 for link in self._links if not link.closed)

    def url(self, dbname: str, user: str = "postgres", extra: str = "") -> str:
        q = f"?{extra}" if extra else ""
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}{q}"

    def _command(self, name: str, arg: Any = None, wait: bool = True) -> None:
        ev = threading.Event()
        with self._lock:
            self._commands.append((name, (arg, ev)))
        try:
            self._wake_w.send(b"x")
        except OSError:
            return
        if wait and not ev.wait(10):
            raise RuntimeError(f"fault proxy did not apply {name!r}")

    def pass_through(self) -> None:
        self._command("mode", ("pass", 0.0))

    restore = pass_through

    def silent(self) -> None:
        self._command("mode", ("silent", 0.0))

    def reset(self) -> None:
        self._command("mode", ("reset", 0.0))

    def latency(self, seconds: float) -> None:
        self._command("mode", ("latency", float(seconds)))

    def close(self) -> None:
        """Stop the thread; reset every link; close the listener. Safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._done.wait(10)
        self._thread.join(10)
        for s in (self._wake_r, self._wake_w):
            s.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop (the proxy thread) ------------------------------------------

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            while not self._stopping:
                self._apply_commands()
                self._register(sel)
                timeout = self._next_due()
                for key, events in sel.select(timeout):
                    sock = key.fileobj
                    if sock is self._wake_r:
                        try:
                            self._wake_r.recv(4096)
                        except OSError:
                            pass
                    elif sock is self._listener:
                        self._accept()
                    else:
                        link = key.data
                        if link.closed:
                            continue
                        if events & selectors.EVENT_WRITE:
                            self._flush(link, sock)  # type: ignore[arg-type]
                        if not link.closed and events & selectors.EVENT_READ:
                            self._read(link, sock)  # type: ignore[arg-type]
                # deliver due data even when no socket event woke us
                if self._mode != "silent":
                    for link in list(self._links):
                        for s in (link.client, link.server):
                            q = link.out[s]
                            if not link.closed and q and q[0][0] <= time.monotonic():
                                self._flush(link, s)
                with self._lock:
                    self._links = [link for link in self._links if not link.closed]
        finally:
            sel.close()
            for link in self._links:
                self._close_link(link, rst=True)
            self._listener.close()
            self._done.set()

    def _apply_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                name, (arg, ev) = self._commands.popleft()
            if name == "mode":
                mode, delay = arg
                self._mode, self._delay = mode, delay
                if mode == "reset":
                    for link in self._links:
                        self._close_link(link, rst=True)
            ev.set()

    def _register(self, sel: selectors.BaseSelector) -> None:
        # Rebuilt every turn: simple, and the proxy carries little traffic.
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)
        sel.register(self._wake_r, selectors.EVENT_READ)
        if self._mode == "silent":
            return  # nothing read, nothing written, nothing accepted
        sel.register(self._listener, selectors.EVENT_READ)
        now = time.monotonic()
        for link in self._links:
            if link.closed:
                continue
            for s in (link.client, link.server):
                events = 0
                if link.queued(link.peer(s)) < _HIGH_WATER:
                    events |= selectors.EVENT_READ
                if link.out[s] and link.out[s][0][0] <= now:
                    events |= selectors.EVENT_WRITE
                if events:
                    sel.register(s, events, link)

    def _next_due(self) -> float | None:
        if self._mode == "silent":
            return None
        due = [link.out[s][0][0] for link in self._links for s in (link.client, link.server)
               if not link.closed and link.out[s]]
        if not due:
            return None
        return max(0.0, min(due) - time.monotonic())

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.accepted += 1
            if self._mode == "reset":
                _rst(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _rst(client)
                continue
            for s in (client, server):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._links.append(_Link(client, server))

    def _read(self, link: _Link, sock: socket.socket) -> None:
        try:
            data = sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_link(link, rst=True)
            return
        if not data:  # EOF: pass the FIN on by closing both sides
            self._close_link(link, rst=False)
            return
        due = time.monotonic() + (self._delay if self._mode == "latency" else 0.0)
        peer = link.peer(sock)
        link.out[peer].append((due, data))
        if due <= time.monotonic():
            self._flush(link, peer)

    def _flush(self, link: _Link, sock: socket.socket) -> None:
        q = link.out[sock]
        now = time.monotonic()
        while q and q[0][0] <= now:
            due, data = q[0]
            try:
                n = sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close_link(link, rst=True)
                return
            if n < len(data):
                q[0] = (due, data[n:])
                return
            q.popleft()

    def _close_link(self, link: _Link, *, rst: bool) -> None:
        if link.closed:
            return
        link.closed = True
        for s in (link.client, link.server):
            if rst:
                _rst(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass
