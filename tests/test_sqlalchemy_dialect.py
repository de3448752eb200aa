"""The SQLAlchemy async dialect ``postgresql+agentdb``: ORM round trips, transactions,
streaming, isolation, errors, the C pool behind ``create_async_engine``."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import enum
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    selectinload,
)

import agentdb.sqlalchemy  # noqa: F401
from agentdb.settings import agentdb_url
from agentdb.sqlalchemy import AgentdbDialect, AgentdbPool


class Mood(enum.Enum):
    happy = "happy"
    sad = "sad"


class Base(DeclarativeBase):
    pass


class Owner(Base):
    __tablename__ = "sa_owner"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50), unique=True)
    pets: Mapped[list[Pet]] = relationship(back_populates="owner", lazy="raise")


class Pet(Base):
    __tablename__ = "sa_pet"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("sa_owner.id"))
    name: Mapped[str] = mapped_column(sa.String(50))
    owner: Mapped[Owner] = relationship(back_populates="pets", lazy="raise")


class Thing(Base):
    __tablename__ = "sa_thing"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    datab: Mapped[dict[str, Any] | None] = mapped_column(pg.JSONB, nullable=True)
    at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True))
    naive: Mapped[datetime.datetime | None] = mapped_column(sa.DateTime, nullable=True)
    day: Mapped[datetime.date | None] = mapped_column(sa.Date, nullable=True)
    mood: Mapped[Mood] = mapped_column(sa.Enum(Mood, name="sa_mood"))
    price: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(12, 3))
    ratio: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    tags: Mapped[list[str]] = mapped_column(pg.ARRAY(sa.String))
    nums: Mapped[list[int] | None] = mapped_column(pg.ARRAY(sa.Integer), nullable=True)
    blob: Mapped[bytes] = mapped_column(sa.LargeBinary)
    span: Mapped[datetime.timedelta | None] = mapped_column(sa.Interval, nullable=True)
    flag: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    big: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)


def sa_url(dsn: str) -> str:
    return agentdb_url(dsn)


@pytest.fixture
async def engine(pg_dsn: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(sa_url(pg_dsn), pool_size=5, max_overflow=5)
    async with eng.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield eng
    finally:
        async with eng.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await eng.dispose()


def test_registered() -> None:
    url = sa.make_url("postgresql+agentdb://u@h/db")
    assert url.get_dialect() is AgentdbDialect
    assert AgentdbDialect.supports_statement_cache is True


async def test_engine_uses_the_c_pool(pg_dsn: str) -> None:
    eng = create_async_engine(
        sa_url(pg_dsn),
        pool_size=3,
        max_overflow=2,
        pool_timeout=7,
        pool_recycle=100,
        pool_pre_ping=True,
    )
    try:
        pool = eng.sync_engine.pool
        assert isinstance(pool, AgentdbPool)
        async with eng.connect() as conn:
            assert (await conn.scalar(sa.text("SELECT 1"))) == 1
        stats = pool.stats()
        assert stats["pool_size"] == 3 and stats["max_overflow"] == 2
        assert stats["in_use"] == 0 and stats["idle"] == 1
        assert pool.timeout() == 7
        # every checkout is an acquire, and reuses the one backend
        pids = set()
        for _ in range(3):
            async with eng.connect() as conn:
                pids.add(await conn.scalar(sa.text("SELECT pg_backend_pid()")))
        assert len(pids) == 1
    finally:
        await eng.dispose()


async def test_pool_timeout_is_sqlalchemy_timeout(pg_dsn: str) -> None:
    eng = create_async_engine(sa_url(pg_dsn), pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        async with eng.connect() as c1:
            await c1.scalar(sa.text("SELECT 1"))
            with pytest.raises(sa_exc.TimeoutError):
                async with eng.connect() as c2:
                    await c2.scalar(sa.text("SELECT 1"))
    finally:
        await eng.dispose()


async def test_types_round_trip(engine: AsyncEngine) -> None:
    at = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
    thing = Thing(
        data={"a": [1, 2, {"b": None}], "s": "x"},
        datab={"k": "v"},
        at=at,
        naive=datetime.datetime(2024, 1, 2, 3, 4, 5),
        day=datetime.date(2024, 2, 29),
        mood=Mood.sad,
        price=decimal.Decimal("1234.567"),
        ratio=0.25,
        tags=["a", "b c", ""],
        nums=[1, 2, 3],
        blob=b"\x00\x01\xffbytes",
        span=datetime.timedelta(days=1, seconds=3),
        flag=True,
        big=2**40,
    )
    async with AsyncSession(engine, expire_on_commit=False) as s:
        s.add(thing)
        await s.commit()
    async with AsyncSession(engine) as s:
        got = (await s.execute(sa.select(Thing))).scalar_one()
        assert got.id == thing.id and isinstance(got.id, uuid.UUID)
        assert got.data == thing.data and got.datab == {"k": "v"}
        assert got.at == at and got.at.tzinfo is not None
        assert got.naive == thing.naive and got.day == thing.day
        assert got.mood is Mood.sad
        assert got.price == decimal.Decimal("1234.567") and isinstance(got.price, decimal.Decimal)
        assert got.ratio == 0.25
        assert got.tags == ["a", "b c", ""] and got.nums == [1, 2, 3]
        assert got.blob == b"\x00\x01\xffbytes"
        assert got.span == datetime.timedelta(days=1, seconds=3)
        assert got.flag is True and got.big == 2**40
        # parameters of every type in WHERE clauses
        q = sa.select(sa.func.count()).select_from(Thing).where(
            Thing.id == thing.id,
            Thing.at == at,
            Thing.mood == Mood.sad,
            Thing.price > decimal.Decimal("1"),
            Thing.tags.contains(["a"]),
            Thing.blob == b"\x00\x01\xffbytes",
            Thing.data["s"].as_string() == "x",
            Thing.datab["k"].astext == "v",
        )
        assert (await s.execute(q)).scalar() == 1


async def test_relationships_selectinload(engine: AsyncEngine) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as s:
        for i in range(3):
            o = Owner(name=f"o{i}")
            o.pets = [Pet(name=f"p{i}{j}") for j in range(i + 1)]
            s.add(o)
        await s.commit()
    async with AsyncSession(engine) as s:
        owners = (
            (await s.execute(sa.select(Owner).options(selectinload(Owner.pets)).order_by(Owner.id)))
            .scalars()
            .all()
        )
        assert [len(o.pets) for o in owners] == [1, 2, 3]
        pets = (await s.execute(sa.select(Pet).options(selectinload(Pet.owner)))).scalars().all()
        assert {p.owner.name for p in pets} == {"o0", "o1", "o2"}


async def test_transactions_and_savepoints(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as s:
        s.add(Owner(name="keep"))
        async with s.begin_nested():
            s.add(Owner(name="inner-kept"))
        nested = await s.begin_nested()
        s.add(Owner(name="inner-dropped"))
        await s.flush()
        await nested.rollback()
        await s.commit()
    async with AsyncSession(engine) as s:
        s.add(Owner(name="rolled-back"))
        await s.flush()
        await s.rollback()
    async with engine.connect() as c:
        names = (await c.execute(sa.select(Owner.name).order_by(Owner.name))).scalars().all()
    assert names == ["inner-kept", "keep"]


async def test_integrity_error_carries_sqlstate(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as s:
        s.add(Owner(name="dup"))
        await s.commit()
        s.add(Owner(name="dup"))
        with pytest.raises(sa_exc.IntegrityError) as info:
            await s.commit()
        assert info.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
        await s.rollback()
        assert (await s.execute(sa.select(sa.func.count(Owner.id)))).scalar() == 1
    async with engine.connect() as c:
        with pytest.raises(sa_exc.ProgrammingError) as pinfo:
            await c.execute(sa.text("SELEC 1"))
        assert pinfo.value.orig.sqlstate == "42601"  # type: ignore[union-attr]
        await c.rollback()
        with pytest.raises(sa_exc.DataError):
            await c.execute(sa.text("SELECT 1/0"))


async def test_stream_uses_a_server_side_cursor(engine: AsyncEngine) -> None:
    async with engine.connect() as c:
        result = await c.stream(sa.text("SELECT g, g * 2 AS d FROM generate_series(1, 1234) g"))
        n = 0
        async for row in result:
            n += 1
            assert row.d == row.g * 2
        assert n == 1234
        # partitions, and a cursor visible while it is open
        result = await c.stream(sa.text("SELECT g FROM generate_series(1, 10) g"))
        cursors = await c.scalar(sa.text("SELECT count(*) FROM pg_cursors WHERE name <> ''"))
        assert cursors == 1
        parts = [len(p) async for p in result.partitions(4)]
        assert parts == [4, 4, 2]
        await c.commit()
    async with AsyncSession(engine) as s:
        s.add_all([Owner(name=f"s{i}") for i in range(5)])
        await s.commit()
        got = [o.name async for o in await s.stream_scalars(sa.select(Owner).order_by(Owner.id))]
        assert got == [f"s{i}" for i in range(5)]
    # autocommit: WITH HOLD
    async with engine.connect() as c:
        c2 = await c.execution_options(isolation_level="AUTOCOMMIT")
        result = await c2.stream(sa.text("SELECT g FROM generate_series(1, 300) g"))
        assert len(await result.all()) == 300


async def test_isolation_levels_readonly_deferrable(engine: AsyncEngine) -> None:
    for level in ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"):
        async with engine.connect() as c:
            c = await c.execution_options(isolation_level=level)
            got = await c.scalar(sa.text("SHOW transaction_isolation"))
            assert got.upper() == level
    async with engine.connect() as c:
        c = await c.execution_options(isolation_level="AUTOCOMMIT")
        await c.execute(sa.text("INSERT INTO sa_owner (id, name) VALUES (1, 'auto')"))
        assert c.sync_connection is not None
        assert not c.sync_connection.connection.driver_connection.is_in_transaction()  # type: ignore[union-attr]
    async with engine.connect() as c:
        assert await c.scalar(sa.text("SELECT name FROM sa_owner WHERE id = 1")) == "auto"
    async with engine.connect() as c:
        c = await c.execution_options(postgresql_readonly=True, postgresql_deferrable=True)
        assert await c.scalar(sa.text("SHOW transaction_read_only")) == "on"
        assert await c.scalar(sa.text("SHOW transaction_deferrable")) == "on"
        with pytest.raises(sa_exc.InternalError):
            await c.execute(sa.text("INSERT INTO sa_owner (id, name) VALUES (2, 'ro')"))
    eng2 = create_async_engine(engine.url, isolation_level="SERIALIZABLE")
    try:
        async with eng2.connect() as c:
            assert (await c.scalar(sa.text("SHOW transaction_isolation"))) == "serializable"
    finally:
        await eng2.dispose()


async def test_executemany_and_insertmanyvalues(engine: AsyncEngine) -> None:
    async with engine.begin() as c:
        await c.execute(
            sa.text("INSERT INTO sa_owner (id, name) VALUES (:id, :name)"),
            [{"id": i, "name": f"n{i}"} for i in range(1000, 1010)],
        )
        rows = (
            await c.execute(
                sa.insert(Owner).returning(Owner.id),
                [{"name": f"r{i}"} for i in range(50)],
            )
        ).scalars().all()
        assert len(rows) == 50
        upd = sa.update(Owner).where(Owner.id >= 1000).values(name=Owner.name + "!")
        res = await c.execute(upd)
        assert res.rowcount == 10
    async with engine.connect() as c:
        assert await c.scalar(sa.select(sa.func.count(Owner.id))) == 60


async def test_disconnect_invalidates_and_recovers(pg_dsn: str, pg_admin_dsn: str) -> None:
    eng = create_async_engine(sa_url(pg_dsn), pool_size=2, max_overflow=0, pool_pre_ping=False)
    try:
        async with eng.connect() as c:
            pid = await c.scalar(sa.text("SELECT pg_backend_pid()"))
            admin = create_async_engine(sa_url(pg_admin_dsn), poolclass=sa.pool.NullPool)
            async with admin.connect() as a:
                await a.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            await admin.dispose()
            await asyncio.sleep(0.1)
            with pytest.raises(sa_exc.DBAPIError) as info:
                await c.execute(sa.text("SELECT 1"))
            assert info.value.connection_invalidated
        async with eng.connect() as c:
            assert await c.scalar(sa.text("SELECT 1")) == 1
        assert eng.sync_engine.pool.stats()["in_use"] == 0  # type: ignore[attr-defined]
    finally:
        await eng.dispose()


async def test_nullpool_and_url_forms(pg_dsn: str) -> None:
    eng = create_async_engine(sa_url(pg_dsn), poolclass=sa.pool.NullPool)
    try:
        async with eng.connect() as c:
            assert await c.scalar(sa.text("SELECT 1")) == 1
    finally:
        await eng.dispose()
    for scheme in ("postgres://", "postgresql://", "postgresql+asyncpg://", "postgresql+psycopg://"):
        assert agentdb_url(scheme + "u:p@h:5/d?sslmode=disable") == (
            "postgresql+agentdb://u:p@h:5/d?sslmode=disable"
        )


async def test_no_password_in_reprs_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-pw-xyz"
    eng = create_async_engine(
        f"postgresql+agentdb://nobody:{secret}@127.0.0.1:1/nodb?connect_timeout=2"
    )
    try:
        assert secret not in repr(eng) and secret not in str(eng.url)
        caplog.set_level(logging.DEBUG)
        with pytest.raises(sa_exc.DBAPIError) as info:
            async with eng.connect() as c:
                await c.execute(sa.text("SELECT 1"))
        text = str(info.value) + repr(info.value) + repr(info.value.orig)
        assert secret not in text
        assert secret not in caplog.text
    finally:
        await eng.dispose()


async def test_concurrent_sessions_share_the_pool(engine: AsyncEngine) -> None:
    async def one(i: int) -> int:
        async with AsyncSession(engine) as s:
            return int((await s.execute(sa.text("SELECT CAST(:i AS int)"), {"i": i})).scalar_one())

    results = await asyncio.gather(*(one(i) for i in range(100)))
    assert results == list(range(100))
    stats = engine.sync_engine.pool.stats()  # type: ignore[attr-defined]
    assert stats["size"] <= 10 and stats["in_use"] == 0


async def test_commit_after_a_statement_cache_eviction(pg_dsn: str) -> None:
    """A statement whose preparation evicts a cached one is followed by the core's own
    ``DEALLOCATE``; while that is in flight the connection reports "active", not "intrans".
    The commit must still be sent (it was skipped, and the pool rolled the rows back)."""
    eng = create_async_engine(
        sa_url(pg_dsn) + "?prepared_statement_cache_size=2", pool_size=1, max_overflow=0
    )
    t = sa.table("sa_evict", sa.column("id", sa.Integer), sa.column("n", sa.Integer))
    try:
        async with eng.begin() as c:
            await c.execute(sa.text("DROP TABLE IF EXISTS sa_evict"))
            await c.execute(sa.text("CREATE TABLE sa_evict (id int PRIMARY KEY, n int)"))
        for i in range(6):
            async with eng.begin() as c:
                # distinct statements: each one prepared evicts another
                await c.execute(sa.text(f"SELECT {i}"))
                await c.execute(sa.text(f"SELECT {i} + 100"))
                await c.execute(t.insert(), [{"id": 10 * i + j, "n": j} for j in range(3)])
            async with eng.begin() as c:
                await c.execute(sa.text(f"SELECT {i} + 200"))
                await c.execute(t.update().where(t.c.id == 10 * i).values(n=-1))
        async with eng.connect() as c:
            assert await c.scalar(sa.select(sa.func.count()).select_from(t)) == 18
            assert await c.scalar(sa.select(sa.func.count()).where(t.c.n == -1)) == 6
            await c.execute(sa.text("DROP TABLE sa_evict"))
            await c.commit()
    finally:
        await eng.dispose()


async def test_same_sql_after_ddl_mid_transaction(pg_dsn: str) -> None:
    """A table re-created with another column type, the same SELECT text on pooled
    connections whose statement caches predate the DDL, as the second statement of a
    transaction (no transparent retry possible there): no "cached plan must not change
    result type". DDL through text() counts too."""
    eng = create_async_engine(sa_url(pg_dsn), pool_size=3, max_overflow=0)
    select_sql = sa.text("SELECT v FROM sa_stale")
    try:
        for kind, value in (("int", 1), ("text", "a"), ("date", datetime.date(2024, 1, 2))):
            async with eng.begin() as c:
                await c.execute(sa.text("DROP TABLE IF EXISTS sa_stale"))
                await c.execute(sa.text(f"CREATE TABLE sa_stale (id int, v {kind})"))
            conns = [await eng.connect() for _ in range(3)]  # every pooled connection
            try:
                for c in conns:
                    await c.execute(
                        sa.text("INSERT INTO sa_stale (id, v) VALUES (:i, :v)"),
                        {"i": id(c) % 1000, "v": value},
                    )
                    assert set((await c.execute(select_sql)).scalars()) == {value}
                    await c.rollback()
            finally:
                for c in conns:
                    await c.close()
        async with eng.begin() as c:
            await c.execute(sa.text("DROP TABLE sa_stale"))
    finally:
        await eng.dispose()
