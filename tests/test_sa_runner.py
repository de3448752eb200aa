"""compliance/sa_tests.py's bookkeeping: failures named so the two dialects' compare, and
the ``--known`` list CI's step checks them against."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

COMPLIANCE = Path(__file__).resolve().parent.parent / "compliance"


@pytest.fixture(scope="module")
def sa_tests() -> Iterator[ModuleType]:
    sys.path.insert(0, str(COMPLIANCE))  # sa_tests.py imports its sibling run.py
    try:
        import sa_tests

        yield sa_tests
    finally:
        sys.path.remove(str(COMPLIANCE))


def test_failures_compare_across_dialects(sa_tests: ModuleType) -> None:
    failures: set[str] = set()
    note = sa_tests._failure_collector(failures)
    note(
        "FAILED test/dialect/postgresql/test_query.py::TableValuedRoundTripTest_postgresql"
        "+agentdb_async_15_20::test_x[None-_exclusions_02] - AssertionError: boom\n"
    )
    note("ERROR test/orm/test_a.py::ATest_postgresql+asyncpg_15_20::test_y\n")
    note("ERROR test/sql/test_b.py\n")  # a collection error: the file
    note("....F....  [ 12%]\n")
    note("FAILED is not how this line starts\n")
    assert failures == {
        "test/dialect/postgresql/test_query.py::TableValuedRoundTripTest::test_x[None-_exclusions_02]",
        "test/orm/test_a.py::ATest::test_y",
        "test/sql/test_b.py",
    }


def test_known_list(sa_tests: ModuleType, tmp_path: Path) -> None:
    known_file = tmp_path / "known.txt"
    known_file.write_text(
        "# a comment\n\n"
        "test/a.py::T::test_x[1-2]  # exact, brackets and all\n"
        "test/b.py::U::*\n"
    )
    known = sa_tests.read_known(known_file)
    assert known == ["test/a.py::T::test_x[1-2]", "test/b.py::U::*"]
    assert sa_tests.is_known("test/a.py::T::test_x[1-2]", known)
    assert sa_tests.is_known("test/b.py::U::test_anything", known)
    assert not sa_tests.is_known("test/a.py::T::test_x[1-3]", known)
    assert not sa_tests.is_known("test/b.py::V::test_z", known)


def test_committed_known_list_reads(sa_tests: ModuleType) -> None:
    """Every entry of CI's list names a test file of SQLAlchemy's tree (test/...py)."""
    known = sa_tests.read_known(COMPLIANCE / "sa_known_failures.txt")
    assert known
    for entry in known:
        assert entry.startswith("test/") and ".py::" in entry, entry
