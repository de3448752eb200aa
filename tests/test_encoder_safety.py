"""Encoders that call into Python: values whose dunders mutate their containers or raise."""

# The C encoders call Python code while they encode (an element's __index__, __float__ or
# __str__, json.dumps and a dict subclass's items(), a COPY record's __iter__).  That code
# may empty, grow or rewrite the list being encoded, a list not reached yet, the row of an
# executemany or the records of a COPY.  Every such value must give a well-defined result
# (each list is read as it is when its encoding begins: a snapshot) or a normal exception,
# never a crash, and the connection must go on working.
#
# The regression tests run each case that crashed the process (SIGSEGV) in a subprocess of
# its own, so that a crash fails one test instead of killing pytest.  The property tests
# compare the driver against a Python model of the encoders (the same dunders called in
# the same order on a second copy of the same values).

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from faults.runner import Runner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import agentdb

SETTINGS = settings(
    max_examples=int(os.environ.get("AGENTDB_ENCODER_SAFETY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---------------------------------------------------------------------------------------
# Regression cases: each crashed the process with SIGSEGV before the encoders read lists
# through snapshots (an element's Python code emptied the list; the encoder went on
# reading items up to the length it had taken before).

_PRELUDE = """
import asyncio, decimal, sys
import agentdb

DSN = sys.argv[1]


class Clears:
    # An element that empties `target` from __index__/__float__/__str__.
    def __init__(self, value, target=None):
        self.value, self.target = value, target

    def fire(self):
        self.target.clear()
        return self.value

    def __index__(self):
        return self.fire()

    def __str__(self):
        return str(self.fire())


class ClearsDecimal(decimal.Decimal):
    target = None

    def __str__(self):
        self.target.clear()
        return decimal.Decimal.__str__(self)


class ClearsDict(dict):
    target = None

    def items(self):
        self.target.clear()
        return super().items()


async def main():
    conn = await agentdb.connect(DSN, timeout=10)
    try:
        print(repr(await case(conn)))
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
"""

_RUN = """
asyncio.run(main())
"""

REGRESSIONS: dict[str, tuple[str, str]] = {
    # codecs/array.c array_bin_put_level: binary int[] whose element empties the list.
    "int[] binary, __index__ empties the list": (
        """
        async def case(conn):
            x = Clears(1)
            v = [x, 2, 3, 4, 5]
            x.target = v
            return await conn.fetchval("SELECT $1::int[]", v)
        """,
        "[1, 2, 3, 4, 5]",
    ),
    # The same, the list shrunk instead of emptied: the encoder read freed items, which
    # an ordinary build may not notice (it sent whatever the freed memory held); ASan does.
    "int[] binary, __index__ shrinks the list": (
        """
        class Shrinks(Clears):
            def fire(self):
                del self.target[1:]
                return self.value


        async def case(conn):
            x = Shrinks(1)
            v = [x, 1000, 1001, 1002, 1003]
            x.target = v
            return await conn.fetchval("SELECT $1::int[]", v)
        """,
        "[1, 1000, 1001, 1002, 1003]",
    ),
    # array_bin_put_level, outer level: the element empties the outer list.
    "int[][] binary, __index__ empties the outer list": (
        """
        async def case(conn):
            x = Clears(1)
            v = [[x, 2], [3, 4]]
            x.target = v
            return await conn.fetchval("SELECT $1::int[]", v)
        """,
        "[[1, 2], [3, 4]]",
    ),
    # array_bin_put_level, inner level: the element empties its own row.
    "int[][] binary, __index__ empties its row": (
        """
        async def case(conn):
            x = Clears(1)
            v = [[x, 2], [3, 4]]
            x.target = v[0]
            return await conn.fetchval("SELECT $1::int[]", v)
        """,
        "[[1, 2], [3, 4]]",
    ),
    # codecs/array.c enc_array_text with a typed element encoder (numeric has no binary array).
    "numeric[] text literal, Decimal.__str__ empties the list": (
        """
        async def case(conn):
            x = ClearsDecimal(1)
            v = [x, 2, 3]
            x.target = v
            return await conn.fetchval("SELECT $1::numeric[]", v)
        """,
        "[Decimal('1'), Decimal('2'), Decimal('3')]",
    ),
    # enc_array_text untyped (no described statement: statement_cache_size=0).
    "text[] untyped, __str__ empties the list": (
        """
        async def case(conn):
            await conn.close()
            conn = await agentdb.connect(DSN, timeout=10, statement_cache_size=0)
            try:
                x = Clears("a")
                v = [x, "b", "c"]
                x.target = v
                return await conn.fetchval("SELECT $1::text[]", v)
            finally:
                await conn.close()


        async def main():
            print(repr(await case(await agentdb.connect(DSN, timeout=10))))
        """,
        "['a', 'b', 'c']",
    ),
    # enc_unknown -> enc_untyped_text -> enc_array_text: a type without a codec (inet[]).
    "inet[] (no codec), __str__ empties the list": (
        """
        async def case(conn):
            x = Clears("10.0.0.1")
            v = [x, "10.0.0.2"]
            x.target = v
            return await conn.fetchval("SELECT array_to_string($1::inet[], ',')", v)
        """,
        "'10.0.0.1,10.0.0.2'",
    ),
    # array_bin_put_level with enc_json: json.dumps calls a dict subclass's items().
    "jsonb[] binary, dict.items() empties the list": (
        """
        async def case(conn):
            x = ClearsDict(a=1)
            v = [x, {"b": 2}]
            x.target = v
            return await conn.fetchval("SELECT $1::jsonb[]", v)
        """,
        "[{'a': 1}, {'b': 2}]",
    ),
    # executemany: an int[] argument of a row (each row's arguments are encoded in turn).
    "executemany, int[] argument empties itself": (
        """
        async def case(conn):
            await conn.execute("CREATE TEMP TABLE t (n int, a int[])")
            x = Clears(1)
            v = [x, 2]
            x.target = v
            await conn.executemany("INSERT INTO t VALUES ($1, $2)", [(1, v), (2, [3])])
            return [tuple(r) for r in await conn.fetch("SELECT n, a FROM t ORDER BY n")]
        """,
        "[(1, [1, 2]), (2, [3])]",
    ),
    # copy_binary.c put_row -> agentdb_encode_binary -> array_bin_put_level.
    "copy_records_to_table binary, int[] value empties itself": (
        """
        async def case(conn):
            await conn.execute("CREATE TEMP TABLE t (n int, a int[])")
            x = Clears(1)
            v = [x, 2, 3]
            x.target = v
            await conn.copy_records_to_table("t", records=[(1, v)])
            return [tuple(r) for r in await conn.fetch("SELECT n, a FROM t")]
        """,
        "[(1, [1, 2, 3])]",
    ),
    # copy_text.c put_value -> agentdb_encode_text_value -> enc_array_text (untyped).
    "copy_records_to_table text, int[] value empties itself": (
        """
        async def case(conn):
            await conn.execute("CREATE TEMP TABLE t (n int, a int[], m macaddr)")
            x = Clears(1)
            v = [x, 2, 3]
            x.target = v
            await conn.copy_records_to_table("t", records=[(1, v, None)])
            return [tuple(r) for r in await conn.fetch("SELECT n, a, m FROM t")]
        """,
        "[(1, [1, 2, 3], None)]",
    ),
}


def run_case(
    tmp_path: Path, pg_dsn: str, body: str, *python_args: str
) -> subprocess.CompletedProcess[str]:
    """`body` (defining `case(conn)`) run by a new interpreter against the suite's server.

    From tmp_path, not the checkout, whose agentdb/ has no built extension; with this
    environment (the ASan run's PYTHONPATH and sys.executable included)."""
    script = tmp_path / "case.py"
    script.write_text(_PRELUDE + textwrap.dedent(body) + _RUN)
    return subprocess.run(
        [sys.executable, *python_args, str(script), pg_dsn],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_regression_no_crash(tmp_path: Path, pg_dsn: str, name: str) -> None:
    body, expected = REGRESSIONS[name]
    proc = run_case(tmp_path, pg_dsn, body)
    assert proc.returncode == 0, (
        f"{name}: exit status {proc.returncode} (negative: killed by that signal, -11 is "
        f"SIGSEGV)\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    )
    assert proc.stdout.strip().splitlines()[-1] == expected


# connection.c kept executemany's rows in a list that op_send_exec read up to a length
# taken before the rows were encoded; user code could reach it through gc.get_referrers.
# Now a tuple.
def test_executemany_rows_list_reached_through_gc(tmp_path: Path, pg_dsn: str) -> None:
    body = """
    import gc


    class Evil:
        row = None

        def __index__(self):
            for r in gc.get_referrers(self.row):
                if isinstance(r, list) and r and r[0] is self.row:
                    r.clear()
            return 1


    async def case(conn):
        await conn.execute("CREATE TEMP TABLE t (n int)")
        e = Evil()
        e.row = (e,)
        try:
            await conn.executemany("INSERT INTO t VALUES ($1)", [e.row, (2,), (3,)])
        except agentdb.Error:
            pass
        return await conn.fetchval("SELECT count(*) FROM t")
    """
    proc = run_case(tmp_path, pg_dsn, body)
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-2000:]}"


# connection.c op_send_exec encoded executemany's rows (Python code) while it held the
# op, its rows and the PGconn; an encoder that closed the connection freed all three, and
# the next row was read from the freed op (ASan: heap-use-after-free at op->args).
def test_executemany_row_encoder_that_terminates(tmp_path: Path, pg_dsn: str) -> None:
    body = """
    class Terminates:
        conn = None

        def __index__(self):
            self.conn.terminate()
            return 1


    async def case(conn):
        t = Terminates()
        t.conn = conn
        try:
            await conn.executemany("SELECT $1::int", [(t,), (2,), (3,)])
        except agentdb.InterfaceError:
            pass
        return conn.is_closed()


    async def main():
        print(repr(await case(await agentdb.connect(DSN, timeout=10))))
    """
    # -X dev: the debug allocator fills freed memory, so the read of the freed op fails
    # every time instead of now and then.
    proc = run_case(tmp_path, pg_dsn, body, "-X", "dev")
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip().splitlines()[-1] == "True"


# What the encoders' Python code does to the connection whose statement they encode:
# close it, cancel that statement, queue others. The statement is never freed under
# them, never sent half-encoded, and the connection stays usable when it is not closed.
CONNECTION_CASES: dict[str, tuple[str, str]] = {
    "one query, its encoder terminates the connection": (
        """
        class Terminates:
            conn = None
            def __index__(self):
                self.conn.terminate()
                return 1

        async def case(conn):
            t = Terminates()
            t.conn = conn
            try:
                await conn.fetchval("SELECT $1::int", t)
            except agentdb.InterfaceError:
                pass
            return conn.is_closed()

        async def main():  # the connection is closed: no check of it afterwards
            print(repr(await case(await agentdb.connect(DSN, timeout=10))))
        """,
        "True",
    ),
    "one query, its encoder cancels the task awaiting it": (
        """
        class Cancels:
            task = None
            def __index__(self):
                self.task.cancel()
                return 1

        async def case(conn):
            # prepared and cached: sent without a describe first, straight from the queue
            assert await conn.fetchval("SELECT $1::int + 100", 1) == 101
            c = Cancels()
            async def run():
                return await conn.fetchval("SELECT $1::int + 100", c)
            blocker = conn.fetchval("SELECT pg_sleep(0.2)")  # so the next one queues
            c.task = asyncio.ensure_future(run())
            try:
                await c.task
            except asyncio.CancelledError:
                pass
            await blocker
            return (await conn.fetchval("SELECT 7"), conn._pending())
        """,
        "(7, 0)",
    ),
    "executemany, an encoder queues another statement on the same connection": (
        """
        class Queues:
            conn = None
            futs = []
            def __index__(self):
                self.futs.append(self.conn.fetchval("SELECT 42"))
                return 1

        async def case(conn):
            q = Queues()
            q.conn = conn
            await conn.execute("CREATE TEMP TABLE t (n int)")
            await conn.executemany("INSERT INTO t VALUES ($1)", [(q,), (2,), (q,)])
            extra = await asyncio.gather(*q.futs)
            return (await conn.fetchval("SELECT count(*) FROM t"), extra)
        """,
        "(3, [42, 42])",
    ),
}


@pytest.mark.parametrize("name", list(CONNECTION_CASES))
def test_encoder_acting_on_its_connection(tmp_path: Path, pg_dsn: str, name: str) -> None:
    body, expected = CONNECTION_CASES[name]
    proc = run_case(tmp_path, pg_dsn, body, "-X", "dev")
    assert proc.returncode == 0, (
        f"{name}: exit status {proc.returncode}\nstdout:\n{proc.stdout}\n"
        f"stderr:\n{proc.stderr[-4000:]}"
    )
    assert proc.stdout.strip().splitlines()[-1] == expected


# ---------------------------------------------------------------------------------------
# Deterministic cases in this process (none of them crashed; they pin the behaviour).


class Boom(Exception):
    """Raised by a test value's dunder."""


async def test_copy_text_record_emptied_by_its_value(conn: agentdb.Connection) -> None:
    """A record list emptied by its first value's str(): the record as it was is copied
    (before: a line with one field, which the server refused)."""
    await conn.execute("CREATE TEMP TABLE t (a int, b text, m macaddr)")
    record: list[Any] = []

    class Empties:
        def __str__(self) -> str:
            record.clear()
            return "1"

    record.extend([Empties(), "x", None])
    assert await conn.copy_records_to_table("t", records=[record]) == "COPY 1"
    assert [tuple(r) for r in await conn.fetch("SELECT a, b, m FROM t")] == [(1, "x", None)]


async def test_copy_binary_record_emptied_by_its_value(conn: agentdb.Connection) -> None:
    """The binary path the same way (before: DataError 'changed size while encoded')."""
    await conn.execute("CREATE TEMP TABLE t (a int, b text)")
    record: list[Any] = []

    class Empties:
        def __index__(self) -> int:
            record.clear()
            return 1

    record.extend([Empties(), "x"])
    assert await conn.copy_records_to_table("t", records=[record]) == "COPY 1"
    assert [tuple(r) for r in await conn.fetch("SELECT a, b FROM t")] == [(1, "x")]


@pytest.mark.parametrize("binary", [True, False])
async def test_copy_records_list_grown_by_a_value(conn: agentdb.Connection, binary: bool) -> None:
    """A value that adds a record each time it is encoded: the records given are copied
    (before: the COPY read the list as it grew; without the bound below, forever)."""
    await conn.execute("CREATE TEMP TABLE t (a int, m macaddr)")
    records: list[Any] = []

    class Grows:
        calls = 0

        def __index__(self) -> int:
            Grows.calls += 1
            if Grows.calls < 100:
                records.append([self, None])
            return 1

        def __str__(self) -> str:
            return str(self.__index__())

    records.append([Grows(), None])
    columns = ["a"] if binary else ["a", "m"]
    if binary:
        records[0].pop()
    assert await conn.copy_records_to_table("t", records=records, columns=columns) == "COPY 1"
    assert Grows.calls == 1
    assert await conn.fetchval("SELECT count(*) FROM t") == 1


async def test_list_subclass_dunders_are_not_called(conn: agentdb.Connection) -> None:
    """A list (subclass) is read from its storage: __len__, __iter__ and __getitem__
    overrides, lying or raising, play no part."""

    class Liar(list[Any]):
        def __len__(self) -> int:
            return 99

        def __iter__(self) -> Iterator[Any]:
            raise Boom("__iter__")

        def __getitem__(self, i: Any) -> Any:
            raise Boom("__getitem__")

    assert await conn.fetchval("SELECT $1::int[]", Liar([1, 2, 3])) == [1, 2, 3]
    assert await conn.fetchval("SELECT $1::text[]", Liar(["a", "b"])) == ["a", "b"]
    assert await conn.fetchval("SELECT $1::numeric[]", Liar([1])) == [Decimal(1)]


async def test_other_sequences_are_refused_by_argument(conn: agentdb.Connection) -> None:
    class Seq:
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> int:
            if i >= 2:
                raise IndexError(i)
            return i

    with pytest.raises(agentdb.DataError, match=r"query argument \$2: .*list or tuple"):
        await conn.fetchval("SELECT $1::int, $2::int[]", 1, Seq())
    assert await conn.fetchval("SELECT 1") == 1


@pytest.mark.parametrize(
    "sql, value",
    [
        ("SELECT $1::int[]", "index"),
        ("SELECT $1::float8[]", "float"),
        ("SELECT $1::numeric[]", "str"),
        ("SELECT $1::inet[]", "str"),
        ("SELECT $1::jsonb[]", "items"),
    ],
)
async def test_a_raising_dunder_is_the_error(
    conn: agentdb.Connection, sql: str, value: str
) -> None:
    """The dunder's own exception comes out; nothing was sent; the connection works."""

    class RaisingDecimal(Decimal):
        def __float__(self) -> float:
            raise Boom("float")

        def __str__(self) -> str:
            raise Boom("str")

    class RaisingDict(dict[str, int]):
        def items(self) -> Any:
            raise Boom("items")

    class Raising:
        def __index__(self) -> int:
            raise Boom("index")

        def __str__(self) -> str:
            raise Boom("str")

    bad: object = {
        "index": Raising(),
        "str": RaisingDecimal(1) if "numeric" in sql else Raising(),
        "float": RaisingDecimal(1),
        "items": RaisingDict(a=1),
    }[value]
    with pytest.raises(Boom):
        await conn.fetchval(sql, [None, bad])
    assert await conn.fetchval("SELECT 1") == 1


async def test_executemany_row_emptied_by_an_earlier_row(conn: agentdb.Connection) -> None:
    """A later row emptied while an earlier one is encoded: the wrong number of arguments
    is reported and no row is sent (the rows are all encoded before any is sent)."""
    await conn.execute("CREATE TEMP TABLE t (a int)")
    later: list[Any] = [2]

    class Empties:
        def __index__(self) -> int:
            later.clear()
            return 1

    with pytest.raises(agentdb.InterfaceError, match="expects 1 arguments, 0 were given"):
        await conn.executemany("INSERT INTO t VALUES ($1)", [(Empties(),), later])
    assert await conn.fetchval("SELECT count(*) FROM t") == 0


async def test_copy_binary_names_record_and_column(conn: agentdb.Connection) -> None:
    """A nested list made ragged by an earlier element's dunder: DataError naming the
    record and column; nothing is copied."""
    await conn.execute("CREATE TEMP TABLE t (a int[])")
    value: list[Any] = [[0, 1], [2, 3]]

    class Shrinks:
        def __index__(self) -> int:
            del value[1][1:]
            return 0

    value[0][0] = Shrinks()
    with pytest.raises(agentdb.DataError, match="COPY record 2, column 1: .*rectangular"):
        await conn.copy_records_to_table("t", records=[([1],), (value,)])
    assert await conn.fetchval("SELECT count(*) FROM t") == 0


# ---------------------------------------------------------------------------------------
# Property tests: values built from a drawn plan, one copy run through the driver, the
# other through a Python model of the encoders.


@dataclass(frozen=True)
class Act:
    """What a value's dunder does before it answers: `op` on `target` ('own': the list the
    value is in; 'root': the outermost container; an int j: root[j] when that is a list)."""

    target: str | int
    op: str
    arg: int = 0


@dataclass(frozen=True)
class Mut:
    """Plan of a mutating value: `value` is what its dunder answers."""

    value: int
    act: Act


class Env:
    def __init__(self) -> None:
        self.root: list[Any] = []

    def fire(self, act: Act, own: list[Any]) -> None:
        if act.target == "own":
            t: Any = own
        elif act.target == "root":
            t = self.root
        else:
            assert isinstance(act.target, int)
            t = self.root[act.target] if act.target < len(self.root) else None
        if not isinstance(t, list):
            return
        if act.op == "clear":
            t.clear()
        elif act.op == "append":
            t.append(act.arg)
        elif act.op == "pop" and t:
            t.pop()
        elif act.op == "del_tail":
            del t[act.arg :]
        elif act.op == "replace" and t:
            t[act.arg % len(t)] = act.arg
        elif act.op == "insert":
            t.insert(0, act.arg)
        elif act.op == "shrink_nested":
            for x in t:
                if isinstance(x, list):
                    del x[1:]
        elif act.op == "raise":
            raise Boom(f"{act}")


class Mutator:
    """An element whose __index__ / __str__ first run its Act."""

    def __init__(self, plan: Mut, env: Env, own: list[Any]) -> None:
        self.plan, self.env, self.own = plan, env, own

    def _fire(self) -> int:
        self.env.fire(self.plan.act, self.own)
        return self.plan.value

    def __index__(self) -> int:
        return self._fire()

    def __str__(self) -> str:
        return str(self._fire())

    def __repr__(self) -> str:  # error messages call it: no side effects
        return f"Mutator({self.plan.value})"


class DecimalMutator(Decimal):
    """A Decimal whose __float__ / __str__ first run its Act."""

    plan: Mut
    env: Env
    own: list[Any]

    def _fire(self) -> None:
        self.env.fire(self.plan.act, self.own)

    def __float__(self) -> float:
        self._fire()
        return float(self.plan.value)

    def __str__(self) -> str:
        self._fire()
        return str(self.plan.value)


def make_decimal_mutator(plan: Mut, env: Env, own: list[Any]) -> DecimalMutator:
    d = DecimalMutator(plan.value)
    d.plan, d.env, d.own = plan, env, own
    return d


class DictMutator(dict[str, int]):
    """A dict whose items() (json.dumps calls it on a dict subclass) first runs its Act."""

    plan: Mut
    env: Env
    own: list[Any]

    def items(self) -> Any:
        self.env.fire(self.plan.act, self.own)
        return super().items()


def make_dict_mutator(plan: Mut, env: Env, own: list[Any]) -> DictMutator:
    d = DictMutator(k=plan.value)
    d.plan, d.env, d.own = plan, env, own
    return d


MakeMut = Callable[[Mut, Env, list[Any]], Any]


def build(plan: Any, env: Env, make: MakeMut, own: list[Any] | None = None) -> Any:
    """Fresh values from a plan (nested lists of int / None / Mut)."""
    if isinstance(plan, list):
        out: list[Any] = []
        for p in plan:
            out.append(build(p, env, make, out))
        return out
    if isinstance(plan, Mut):
        assert own is not None
        return make(plan, env, own)
    return plan


def build_root(plan: list[Any], make: MakeMut) -> tuple[Env, list[Any]]:
    env = Env()
    env.root = build(plan, env, make)
    return env, env.root


OPS = ["clear", "append", "pop", "del_tail", "replace", "insert", "shrink_nested", "raise"]
acts = st.builds(
    Act,
    target=st.sampled_from(["own", "root", 0, 1, 2]),
    op=st.sampled_from(OPS),
    arg=st.integers(0, 3),
)
muts = st.builds(Mut, value=st.integers(-50, 50), act=acts)
leaves = st.one_of(st.integers(-50, 50), st.none(), muts, muts)


def arrays(leaf: st.SearchStrategy[Any] = leaves) -> st.SearchStrategy[list[Any]]:
    """Flat lists, 2-D lists (mostly rectangular) and ragged ones."""
    flat = st.lists(leaf, max_size=5)
    rect = st.integers(1, 3).flatmap(
        lambda n: st.lists(st.lists(leaf, min_size=n, max_size=n), min_size=1, max_size=3)
    )
    ragged = st.lists(st.lists(leaf, max_size=3), max_size=3)
    return st.one_of(flat, rect, rect, ragged)


class NotRect(Exception):
    """The model's word for 'the driver raises DataError (a malformed array)'."""


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except Boom:
        return ("raise", "Boom")
    except (NotRect, agentdb.DataError):
        return ("raise", "DataError")
    except agentdb.InterfaceError:
        return ("raise", "InterfaceError")
    except TypeError:  # a record that is not a sequence
        return ("raise", "TypeError")


def label(got: tuple[str, Any]) -> str:
    return "ok" if got[0] == "ok" else f"raises {got[1]}"


def model_binary_array(v: Any, elem: Callable[[Any], Any]) -> list[Any]:
    """array_bin_put_level: dims from the first elements (before any Python code runs),
    then each level from a snapshot checked against them."""
    if not isinstance(v, list):
        raise NotRect("a list is required")
    dims: list[int] = []
    cur: Any = v
    while isinstance(cur, list):
        dims.append(len(cur))
        if not cur:
            break
        cur = cur[0]
    if 0 in dims:
        return []

    def level(x: Any, lvl: int) -> list[Any]:
        if not isinstance(x, list):
            raise NotRect
        items = tuple(x)
        if len(items) != dims[lvl]:
            raise NotRect
        out: list[Any] = []
        for it in items:
            if lvl + 1 < len(dims):
                out.append(level(it, lvl + 1))
            elif it is None:
                out.append(None)
            elif isinstance(it, list):
                raise NotRect
            else:
                out.append(elem(it))
        return out

    return level(v, 0)


def model_text_array(v: Any, elem: Callable[[Any], Any]) -> list[Any]:
    """enc_array_text (a snapshot per list), then the server's array parser (rectangular,
    no empty sub-arrays: '{{},{}}' is malformed)."""

    def lit(x: list[Any]) -> list[Any]:
        out: list[Any] = []
        for it in tuple(x):
            out.append(None if it is None else lit(it) if isinstance(it, list) else elem(it))
        return out

    value = lit(v)

    def shape(x: Any) -> Any:
        if not isinstance(x, list):
            return ()
        if not x:
            raise NotRect
        shapes = {shape(i) for i in x}
        if len(shapes) != 1:
            raise NotRect
        return (len(x), *shapes.pop())

    if value:
        shape(value)
    return value


def index_elem(x: Any) -> int:
    return operator.index(x)


def float_elem(x: Any) -> float:
    return float(x)


class Db:
    """One connection on a private event loop (hypothesis calls a test body many times)."""

    def __init__(self, dsn: str, **kw: Any) -> None:
        self.runner = Runner()
        self.conn: agentdb.Connection = self.runner.run(agentdb.connect(dsn, timeout=10, **kw))

    def run(self, coro_fn: Callable[[agentdb.Connection], Any]) -> Any:
        return self.runner.run(coro_fn(self.conn))

    def val(self, sql: str, *args: Any) -> Any:
        async def q(c: agentdb.Connection) -> Any:
            return await c.fetchval(sql, *args, timeout=30)

        return self.run(q)

    def close(self) -> None:
        async def close(c: agentdb.Connection) -> None:
            await c.close()

        self.run(close)
        self.runner.close()


@pytest.fixture(scope="module")
def db(pg_dsn: str) -> Iterator[Db]:
    d = Db(pg_dsn)
    for ddl in (
        "CREATE TEMP TABLE many_t (id serial, a int, b int[])",
        "CREATE TEMP TABLE copy_bin_t (id serial, a int, b int[])",
        "CREATE TEMP TABLE copy_text_t (id serial, a int, b int[], m macaddr)",
    ):
        d.val(ddl)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def db_untyped(pg_dsn: str) -> Iterator[Db]:
    """No prepared statements: arguments go untyped, lists as text array literals."""
    d = Db(pg_dsn, statement_cache_size=0)
    try:
        yield d
    finally:
        d.close()


def usable(d: Db) -> None:
    assert d.val("SELECT 1") == 1


BINARY_ROUTES: dict[str, tuple[str, MakeMut, Callable[[Any], Any]]] = {
    "int4[] (__index__)": ("SELECT $1::int4[]", Mutator, index_elem),
    "float8[] (Decimal.__float__)": ("SELECT $1::float8[]", make_decimal_mutator, float_elem),
}


@pytest.mark.parametrize("route", list(BINARY_ROUTES))
@SETTINGS
@given(plan=arrays())
def test_binary_arrays_match_the_model(db: Db, route: str, plan: list[Any]) -> None:
    sql, make, elem = BINARY_ROUTES[route]
    _, model_value = build_root(plan, make)
    expected = outcome(lambda: model_binary_array(model_value, elem))
    _, value = build_root(plan, make)
    got = outcome(lambda: db.val(sql, value))
    event(label(got))
    assert got == expected
    usable(db)


TEXT_ROUTES: dict[str, tuple[str, bool, MakeMut, Callable[[Any], Any]]] = {
    # typed: numeric[] goes as a text literal built by enc_numeric (Decimal.__str__)
    "numeric[] (Decimal.__str__)": ("SELECT $1::numeric[]", True, make_decimal_mutator,
                                    lambda x: Decimal(str(x))),
    # untyped: the literal is built by enc_untyped_text (str() of each element)
    "text[] untyped (__str__)": ("SELECT $1::text[]", False, Mutator, str),
}


@pytest.mark.parametrize("route", list(TEXT_ROUTES))
@SETTINGS
@given(plan=arrays())
def test_text_arrays_match_the_model(db: Db, db_untyped: Db, route: str, plan: list[Any]) -> None:
    sql, typed, make, elem = TEXT_ROUTES[route]
    d = db if typed else db_untyped
    _, model_value = build_root(plan, make)
    expected = outcome(lambda: model_text_array(model_value, elem))
    _, value = build_root(plan, make)
    got = outcome(lambda: d.val(sql, value))
    event(label(got))
    assert got == expected
    usable(d)


def json_elem(x: Any) -> Any:
    return json.loads(json.dumps(x))


@SETTINGS
@given(plan=st.lists(st.one_of(st.integers(-50, 50), st.none(), muts), max_size=5))
def test_jsonb_arrays_match_the_model(db: Db, plan: list[Any]) -> None:
    """jsonb[]: json.dumps calls items() of a dict subclass, which mutates the list."""
    _, model_value = build_root(plan, make_dict_mutator)
    expected = outcome(lambda: model_binary_array(model_value, json_elem))
    _, value = build_root(plan, make_dict_mutator)
    got = outcome(lambda: db.val("SELECT $1::jsonb[]", value))
    event(label(got))
    assert got == expected
    usable(db)


# Rows of (a int, b int[]): a is an int, None or a mutating value; b an array plan.  Acts
# aimed at 'root' or j act on the rows (or records) list and its rows.
rows_plans = st.lists(
    st.one_of(
        st.tuples(leaves, arrays()).map(list),
        st.tuples(leaves, arrays()).map(list),
        st.lists(st.one_of(leaves, arrays()), max_size=3),  # often the wrong arity
    ),
    max_size=4,
)


def model_row(row: Any, ncols: int, arity_error: type[Exception]) -> tuple[Any, ...]:
    args = tuple(row)
    if len(args) != ncols:
        raise arity_error
    out: list[Any] = []
    for i, a in enumerate(args[:2]):
        if a is None:
            out.append(None)
        elif i == 0:
            if isinstance(a, list):
                raise NotRect("an int is required")
            out.append(index_elem(a))
        else:
            out.append(model_binary_array(a, index_elem))
    return tuple(out)


class ArityError(Exception):
    pass


@SETTINGS
@given(plan=rows_plans)
def test_executemany_matches_the_model(db: Db, plan: list[Any]) -> None:
    def model() -> list[tuple[Any, ...]]:
        _, rows = build_root(plan, Mutator)
        try:
            return [model_row(r, 2, ArityError) for r in list(rows)]
        except ArityError:
            raise agentdb.InterfaceError("wrong number of arguments") from None

    expected = outcome(model)

    async def run(c: agentdb.Connection) -> list[tuple[Any, ...]]:
        _, rows = build_root(plan, Mutator)
        await c.execute("TRUNCATE many_t")
        try:
            await c.executemany("INSERT INTO many_t (a, b) VALUES ($1, $2)", rows)
        finally:
            count = await c.fetchval("SELECT count(*) FROM many_t")
        got = [tuple(r) for r in await c.fetch("SELECT a, b FROM many_t ORDER BY id")]
        assert count == len(got)
        return got

    got = outcome(lambda: db.run(run))
    event(label(got))
    assert got == expected
    if got[0] == "raise":  # nothing half-sent
        assert db.val("SELECT count(*) FROM many_t") == 0
    usable(db)


@SETTINGS
@given(plan=rows_plans)
def test_copy_binary_matches_the_model(db: Db, plan: list[Any]) -> None:
    def model() -> list[tuple[Any, ...]]:
        _, records = build_root(plan, Mutator)
        return [model_row(r, 2, NotRect) for r in list(records)]  # a snapshot, as C

    expected = outcome(model)

    async def run(c: agentdb.Connection) -> list[tuple[Any, ...]]:
        _, records = build_root(plan, Mutator)
        await c.execute("TRUNCATE copy_bin_t")
        await c.copy_records_to_table("copy_bin_t", records=records, columns=["a", "b"])
        return [tuple(r) for r in await c.fetch("SELECT a, b FROM copy_bin_t ORDER BY id")]

    got = outcome(lambda: db.run(run))
    event(label(got))
    assert got == expected
    if got[0] == "raise":
        assert db.val("SELECT count(*) FROM copy_bin_t") == 0
    usable(db)


@SETTINGS
@given(plan=rows_plans.map(lambda rows: [[*r, None] for r in rows]))
def test_copy_text_matches_the_model(db: Db, plan: list[Any]) -> None:
    """(a int, b int[], m macaddr): macaddr has no binary encoder, so the COPY is text;
    every value is str()'d into the payload before it is sent, and the server judges it."""

    def model() -> list[tuple[Any, ...]]:
        _, records = build_root(plan, Mutator)
        rows: list[tuple[Any, ...]] = []
        bad = False
        for r in list(records):  # a snapshot of the list, as C takes
            fields: list[Any] = []
            for v in tuple(r):
                if v is None:
                    fields.append(None)
                elif isinstance(v, list):
                    try:
                        fields.append(model_text_array(v, lambda x: int(str(x))))
                    except NotRect:
                        fields.append(NotRect)
                else:
                    fields.append(int(str(v)))
            ok = (
                len(fields) == 3
                and (fields[0] is None or isinstance(fields[0], int))
                and (fields[1] is None or isinstance(fields[1], list))
                and fields[2] is None
            )
            bad = bad or not ok
            rows.append(tuple(fields))
        if bad:
            raise NotRect("the server refuses the payload")
        return rows

    expected = outcome(model)

    async def run(c: agentdb.Connection) -> list[tuple[Any, ...]]:
        _, records = build_root(plan, Mutator)
        await c.execute("TRUNCATE copy_text_t")
        await c.copy_records_to_table("copy_text_t", records=records, columns=["a", "b", "m"])
        return [tuple(r) for r in await c.fetch("SELECT a, b, m FROM copy_text_t ORDER BY id")]

    got = outcome(lambda: db.run(run))
    event(label(got))
    assert got == expected
    if got[0] == "raise":
        assert db.val("SELECT count(*) FROM copy_text_t") == 0
    usable(db)


class Record:
    """A COPY record that is not a list: its __iter__ runs an Act on the records first;
    its __len__ lies and its __getitem__ raises (neither is used)."""

    def __init__(self, values: list[Any], act: Act, env: Env) -> None:
        self.values, self.act, self.env = values, act, env

    def __iter__(self) -> Iterator[Any]:
        self.env.fire(self.act, self.env.root)
        return iter(list(self.values))

    def __len__(self) -> int:
        return 7

    def __getitem__(self, i: int) -> Any:
        raise Boom("__getitem__")


@pytest.mark.parametrize("binary", [True, False])
@SETTINGS
@given(
    plan=st.lists(
        st.tuples(st.integers(-50, 50), acts, st.booleans()),
        max_size=4,
    )
)
def test_copy_record_objects_match_the_model(
    db: Db, binary: bool, plan: list[tuple[int, Act, bool]]
) -> None:
    """Records given as objects whose __iter__ mutates the records list."""
    table = "copy_bin_t" if binary else "copy_text_t"
    columns = ["a", "b"] if binary else ["a", "b", "m"]

    def records_for(env: Env) -> list[Any]:
        tail = [] if binary else [None]
        out: list[Any] = []
        for a, act, as_object in plan:
            out.append(Record([a, [a], *tail], act, env) if as_object else [a, [a], *tail])
        return out

    def model() -> list[tuple[Any, ...]]:
        env = Env()
        env.root = records_for(env)
        rows = []
        bad = False
        for r in list(env.root):  # a snapshot of the list, as C takes
            values = tuple(r)
            fits = (
                len(values) == len(columns)
                and not isinstance(values[0], list)
                and isinstance(values[1], list)  # an int put there by a 'replace' is not
                and values[2:] in ((), (None,))
            )
            if not fits:
                if binary:
                    raise NotRect("wrong number of values")
                bad = True  # the text payload is finished first; the server refuses it
            rows.append(values)
        if bad:
            raise NotRect("the server refuses the payload")
        return rows

    expected = outcome(model)

    async def run(c: agentdb.Connection) -> list[tuple[Any, ...]]:
        env = Env()
        env.root = records_for(env)
        await c.execute(f"TRUNCATE {table}")
        await c.copy_records_to_table(table, records=env.root, columns=columns)
        cols = ", ".join(columns)
        return [tuple(r) for r in await c.fetch(f"SELECT {cols} FROM {table} ORDER BY id")]

    got = outcome(lambda: db.run(run))
    event(label(got))
    assert got == expected
    usable(db)
