"""src/record.c: Record, one result row (built here with _core._make_record)."""

from __future__ import annotations

import gc
import operator
import pickle
import sys
import weakref

import pytest

from agentdb import _core

make = _core._make_record


@pytest.fixture
def rec() -> object:
    return make(("id", "name", "score"), (1, "a", None))


def test_type_flags() -> None:
    assert _core.Record.__module__ == "agentdb"
    assert _core.Record.__name__ == "Record"
    with pytest.raises(TypeError):
        _core.Record()
    with pytest.raises(TypeError):
        _core.RecordDesc()
    with pytest.raises(TypeError):

        class Sub(_core.Record):  # type: ignore[misc]
            pass

    with pytest.raises(TypeError):
        _core.Record.foo = 1


def test_index_by_position(rec) -> None:
    assert rec[0] == 1
    assert rec[1] == "a"
    assert rec[2] is None
    assert rec[-1] is None
    assert rec[-3] == 1
    with pytest.raises(IndexError):
        rec[3]
    with pytest.raises(IndexError):
        rec[-4]
    with pytest.raises(IndexError):
        rec[2**70]
    assert rec[True] == "a"


def test_slices(rec) -> None:
    assert rec[:] == (1, "a", None)
    assert type(rec[:]) is tuple
    assert rec[1:] == ("a", None)
    assert rec[::-1] == (None, "a", 1)
    assert rec[::2] == (1, None)
    assert rec[5:] == ()


def test_index_by_name(rec) -> None:
    assert rec["id"] == 1
    assert rec["name"] == "a"
    assert rec["score"] is None
    with pytest.raises(KeyError) as info:
        rec["missing"]
    assert info.value.args == ("missing",)


def test_bad_key_type(rec) -> None:
    with pytest.raises(TypeError):
        rec[1.5]
    with pytest.raises(TypeError):
        rec[None]


def test_len_iter(rec) -> None:
    assert len(rec) == 3
    assert list(rec) == [1, "a", None]
    assert tuple(rec) == (1, "a", None)
    a, b, c = rec
    assert (a, b, c) == (1, "a", None)


def test_keys_values_items(rec) -> None:
    assert list(rec.keys()) == ["id", "name", "score"]
    assert list(rec.values()) == [1, "a", None]
    assert list(rec.items()) == [("id", 1), ("name", "a"), ("score", None)]


def test_get(rec) -> None:
    assert rec.get("id") == 1
    assert rec.get("missing") is None
    assert rec.get("missing", 7) == 7
    assert rec.get("score", 7) is None
    assert rec.get(0, "d") == "d"
    with pytest.raises(TypeError):
        rec.get()
    with pytest.raises(TypeError):
        rec.get("a", 1, 2)


def test_contains_checks_names(rec) -> None:
    assert "id" in rec
    assert "missing" not in rec
    assert 1 not in rec
    assert [] not in rec


def test_dict(rec) -> None:
    assert dict(rec) == {"id": 1, "name": "a", "score": None}


def test_equality_and_hash(rec) -> None:
    same = make(("x", "y", "z"), (1, "a", None))
    other = make(("id", "name", "score"), (2, "a", None))
    assert rec == same
    assert not (rec != same)
    assert rec != other
    assert rec == (1, "a", None)
    assert (1, "a", None) == rec
    assert rec != (1, "a")
    assert rec != [1, "a", None]
    assert rec < other
    assert other > (1,)
    assert hash(rec) == hash((1, "a", None))
    assert hash(rec) == hash(rec)  # cached
    assert {rec: 1}[(1, "a", None)] == 1
    unhashable = make(("l",), ([],))
    with pytest.raises(TypeError):
        hash(unhashable)


def test_repr(rec) -> None:
    assert repr(rec) == "<Record id=1 name='a' score=None>"
    assert repr(make((), ())) == "<Record>"


def test_recursive_repr() -> None:
    box: list[object] = []
    r = make(("box",), (box,))
    box.append(r)
    assert repr(r) == "<Record box=[<Record ...>]>"
    box.clear()


def test_duplicate_names_first_wins() -> None:
    r = make(("a", "b", "a"), (1, 2, 3))
    assert r["a"] == 1
    assert r[2] == 3
    assert len(r) == 3
    assert list(r.keys()) == ["a", "b", "a"]
    assert list(r) == [1, 2, 3]
    assert dict(r) == {"a": 1, "b": 2}
    assert r.get("a") == 1
    assert repr(r) == "<Record a=1 b=2 a=3>"


def test_empty_record() -> None:
    r = make((), ())
    assert len(r) == 0
    assert list(r) == []
    assert list(r.keys()) == []
    assert dict(r) == {}
    assert r == ()
    assert hash(r) == hash(())
    assert r[:] == ()
    with pytest.raises(IndexError):
        r[0]
    with pytest.raises(KeyError):
        r["a"]


def test_itemgetter_and_sequence_protocol(rec) -> None:
    assert operator.itemgetter(0)(rec) == 1
    assert operator.itemgetter(2, 0)(rec) == (None, 1)
    assert operator.itemgetter("name")(rec) == "a"
    assert sorted([make(("a",), (2,)), make(("a",), (1,))], key=operator.itemgetter(0))[0][0] == 1


def test_sqlalchemy_row_usage(rec) -> None:
    # What a DBAPI row must support for SQLAlchemy: int indexing, len, iteration.
    row = rec
    assert [row[i] for i in range(len(row))] == list(row)
    assert tuple(row) == row[:]


def test_make_record_validation() -> None:
    with pytest.raises(TypeError):
        make(["a"], (1,))
    with pytest.raises(ValueError):
        make(("a", "b"), (1,))
    with pytest.raises(TypeError):
        make((1,), (1,))
    with pytest.raises(TypeError):
        make(("a",))


def test_not_picklable_by_default(rec) -> None:
    with pytest.raises((TypeError, pickle.PicklingError)):
        pickle.dumps(rec)


def test_no_refcount_leaks() -> None:
    value = object()
    name = "refcount_col"
    names = (name, "other")
    before_v = sys.getrefcount(value)
    before_n = sys.getrefcount(name)
    recs = [make(names, (value, value)) for _ in range(100)]
    assert sys.getrefcount(value) == before_v + 200
    for r in recs:
        r[0], r["refcount_col"], list(r), list(r.items()), dict(r), repr(r), r == (value, value)
    del r
    del recs
    assert sys.getrefcount(value) == before_v
    assert sys.getrefcount(name) == before_n


def test_no_leak_on_errors() -> None:
    value = object()
    before = sys.getrefcount(value)
    r = make(("a",), (value,))
    for _ in range(10):
        with pytest.raises(KeyError):
            r["nope"]
        with pytest.raises(IndexError):
            r[5]
        assert r.get("nope", value) is value
    del r
    assert sys.getrefcount(value) == before


class Marker:
    pass


def test_cycle_through_record_is_collected() -> None:
    gc.collect()
    marker = Marker()
    freed: list[bool] = []
    ref = weakref.ref(marker, lambda _: freed.append(True))
    box: list[object] = [marker]
    r = make(("box",), (box,))
    box.append(r)  # box -> r -> box
    assert gc.is_tracked(r)
    del marker, box, r
    assert not freed
    gc.collect()
    assert freed == [True]
    assert ref() is None


def test_record_gc_referents(rec) -> None:
    box: list[object] = []
    r = make(("box", "n"), (box, 1))
    referents = gc.get_referents(r)
    assert any(x is box for x in referents)
    assert type(r) in referents


def test_deep_nesting_dealloc() -> None:
    # Trashcan: freeing a deeply nested chain must not overflow the C stack.
    r = make(("x",), (None,))
    for _ in range(200_000):
        r = make(("x",), (r,))
    del r


def test_non_ascii_names() -> None:
    r = make(("名前", "prénom"), (1, 2))
    assert r["名前"] == 1
    assert r["prénom"] == 2
    assert repr(r) == "<Record 名前=1 prénom=2>"


def test_embedded_nul_name_rejected() -> None:
    with pytest.raises(ValueError):
        make(("a\0b",), (1,))


def test_many_columns() -> None:
    names = tuple(f"c{i}" for i in range(1000))
    r = make(names, tuple(range(1000)))
    assert r["c999"] == 999
    assert r[-1] == 999
    assert dict(r) == {n: i for i, n in enumerate(names)}
