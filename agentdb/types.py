"""Driver layer: the named tuples asyncpg's API returns: ServerVersion, Type, Attribute."""

from __future__ import annotations

from typing import NamedTuple


class ServerVersion(NamedTuple):
    """The server's version, as asyncpg's ``ServerVersion``: ``(15, 0, 8, 'final', 0)``
    for 15.8 (from PostgreSQL 10 on, the minor is 0 and the second number the micro)."""

    major: int
    minor: int
    micro: int
    releaselevel: str
    serial: int


class Type(NamedTuple):
    """A PostgreSQL data type: ``kind`` is ``'scalar'``, ``'array'``, ``'composite'``,
    ``'range'``, ``'multirange'`` or ``'domain'``; ``schema`` the type's namespace."""

    oid: int
    name: str
    kind: str
    schema: str


class Attribute(NamedTuple):
    """A result column of a prepared statement: its name and type."""

    name: str
    type: Type


def parse_server_version(text: str) -> ServerVersion:
    """``server_version`` (the parameter status: ``"15.8 (Debian 15.8-1.pgdg120+1)"``,
    ``"17beta2"``, ``"9.6.24"``) as a ServerVersion, by asyncpg's rule."""
    word = text.strip().removeprefix("PostgreSQL ").split(" ")[0]
    parts: list[str] = word.split(".")
    level, serial = "final", 0
    last = parts[-1]
    if not last.isdigit():
        digits = len(last) - len(last.lstrip("0123456789"))
        number, rest = last[:digits], last[digits:].lower()
        tail = len(rest) - len(rest.rstrip("0123456789"))
        level = rest[: len(rest) - tail] if tail else rest
        serial = int(rest[len(rest) - tail :]) if tail else 0
        parts[-1] = number or "0"
    numbers = [int(p) for p in parts if p.isdigit()]
    if numbers and numbers[0] >= 10:
        numbers.insert(1, 0)  # 15.8 is 15.0.8: version[:2] checks see the major alone
    numbers = (numbers + [0, 0, 0])[:3]
    return ServerVersion(numbers[0], numbers[1], numbers[2], level, serial)
