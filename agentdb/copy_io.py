"""Driver layer: COPY's sources and sinks, read and written off the event loop.

Sources and sinks are paths, file objects, async iterables and coroutine functions; the
streams made from them feed a connection's COPY.

A file's reads and writes (and its opening and closing) run in the loop's default
executor, as asyncpg does, so a slow disk never blocks the loop. Data goes through in
chunks: a COPY never holds a whole file or table in memory.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

from . import _core

#: Bytes read from a file at a time.
CHUNK_SIZE = 256 * 1024
#: Records encoded at a time from an async iterable of records.
RECORDS_BATCH = 1000
#: Binary COPY's header (signature, flags, extension length) and trailer.
BINARY_HEADER_LEN = 19
BINARY_TRAILER = b"\xff\xff"

Writer = Callable[[bytes], Awaitable[Any]]


def _is_path(obj: object) -> bool:
    return isinstance(obj, (str, os.PathLike))


async def _run(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


async def source_chunks(source: Any) -> AsyncIterator[bytes]:
    """The bytes of a COPY ``source``: a path, a file object (its ``read``, a coroutine
    function or not), an async iterable of bytes-like objects. TypeError otherwise."""
    if _is_path(source):
        f = await _run(open, source, "rb")
        try:
            while chunk := await _run(f.read, CHUNK_SIZE):
                yield chunk
        finally:
            await _run(f.close)
    elif hasattr(source, "read"):
        read = source.read
        if inspect.iscoroutinefunction(read):
            while chunk := await read(CHUNK_SIZE):
                yield _as_bytes(chunk)
        else:
            while chunk := await _run(read, CHUNK_SIZE):
                yield _as_bytes(chunk)
    elif isinstance(source, AsyncIterable):
        async for chunk in source:
            yield _as_bytes(chunk)
    else:
        raise TypeError(
            "source must be bytes, a path, a file object or an async iterable of bytes, "
            f"not {type(source).__name__}"
        )


def _as_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"COPY data must be bytes, not {type(chunk).__name__}")


async def record_chunks(
    records: AsyncIterable[Sequence[Any]],
    oids: tuple[int, ...] | None,
    encode_binary: Callable[[list[Sequence[Any]], tuple[int, ...]], bytes | None],
) -> AsyncIterator[tuple[bool, bytes]]:
    """COPY payload chunks for records from an async iterable, RECORDS_BATCH at a time:
    (binary, chunk). Binary while every column has a binary encoder (``oids`` given and
    the first batch encodes): the header comes with the first chunk, the trailer alone
    at the end; else text."""
    binary: bool | None = None
    batch: list[Sequence[Any]] = []

    def encode(rows: list[Sequence[Any]], first: bool) -> tuple[bool, bytes]:
        nonlocal binary
        if binary is not False and oids is not None:
            payload = encode_binary(rows, oids)
            if payload is not None:
                binary = True
                start = 0 if first else BINARY_HEADER_LEN
                return True, payload[start : -len(BINARY_TRAILER)]
        binary = False
        return False, _core._copy_text(rows)

    first = True
    async for record in records:
        batch.append(record)
        if len(batch) >= RECORDS_BATCH:
            yield encode(batch, first)
            first, batch = False, []
    if batch or first:
        yield encode(batch, first)
    if binary:
        yield True, BINARY_TRAILER


def output_writer(output: Any) -> tuple[Writer, Callable[[], Awaitable[None]]]:
    """(write, close) for a COPY ``output``: a path (opened for writing now, in the
    executor, on the first write), a file object (its ``write``, a coroutine function or
    not), or a coroutine function called with each chunk. TypeError otherwise."""
    if _is_path(output):
        handle: list[Any] = []

        async def write_file(data: bytes) -> None:
            if not handle:
                handle.append(await _run(open, output, "wb"))
            await _run(handle[0].write, data)

        async def close_file() -> None:
            if not handle:  # no rows: the file is still made, empty
                handle.append(await _run(open, output, "wb"))
            await _run(handle[0].close)

        return write_file, close_file

    async def nothing() -> None:
        return None

    if hasattr(output, "write"):
        write = output.write
        if inspect.iscoroutinefunction(write):
            return write, nothing

        async def write_sync(data: bytes) -> None:
            await _run(write, data)

        return write_sync, nothing
    if inspect.iscoroutinefunction(output):
        return output, nothing
    raise TypeError(
        "output must be a path, a file object or a coroutine function, "
        f"not {type(output).__name__}"
    )


class ChunkQueue:
    """The chunks of a COPY TO STDOUT as they arrive (``put``, called by the core), for a
    writer that takes them in order (``drain``)."""

    def __init__(self) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def drain(self, copy: asyncio.Future[Any], write: Writer) -> None:
        """Write every chunk until ``copy`` is done and none is left; several chunks that
        arrived meanwhile are written at once."""
        loop = asyncio.get_running_loop()
        while True:
            if self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                await write(data)
                continue
            if copy.done():
                return
            self._waiter = loop.create_future()
            await asyncio.wait((self._waiter, copy), return_when=asyncio.FIRST_COMPLETED)
            self._waiter = None


def iter_or_aiter(records: Any) -> bool:
    """Whether ``records`` is an async iterable (True) or a plain iterable (False);
    TypeError for anything else."""
    if isinstance(records, AsyncIterable):
        return True
    if isinstance(records, Iterable):
        return False
    raise TypeError(f"records must be an iterable or async iterable, not {type(records).__name__}")
