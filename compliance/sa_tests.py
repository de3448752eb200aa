"""Run SQLAlchemy's own tests (its source distribution) on a fresh database, and compare.

Usage: ``python compliance/sa_tests.py [--dialect agentdb|asyncpg|both] [--installed]
[--keep-db] [--cache DIR] [--known FILE] [--failures-out FILE] [TEST_PATH ...]
[-- PYTEST_ARGS ...]`` (``compliance/sa_tests.sh`` wraps it).

TEST_PATH: paths inside SQLAlchemy's source tree (default: ``DEFAULT_TESTS``); each runs
as a pytest run of its own, so each gets its own counts and time. The source is the sdist
of the installed SQLAlchemy version, fetched once with ``pip download --no-deps
--no-binary :all:`` into the cache directory (``--cache``, else ``$AGENTDB_CACHE_DIR``,
else ``${XDG_CACHE_HOME:-~/.cache}/agentdb``) and unpacked there; later runs reuse it.
Its tests run with ``--dburi postgresql+<dialect>://scott:tiger@...`` on a database made
afresh (``${SA_TESTS_DBNAME:-sqla_tests}_<dialect>``; the server and the
set-up: ``compliance/run.py``), from the unpacked tree, with SQLAlchemy's own requirements
class and plugin, against the installed SQLAlchemy (``python -s``: the sdist's conftest
then leaves its ``lib/`` off ``sys.path``).

A failed or erroring test is named by its node id with the per-backend suffix SQLAlchemy
gives its test classes removed (``FooTest_postgresql+agentdb_async_15_20::test_x`` ->
``FooTest::test_x``), so the two dialects' failures compare.

Exit status (1 also when a pytest run did not complete):

- ``--dialect both``: asyncpg, then agentdb; 1 when agentdb fails a test that passes on
  asyncpg (and that ``--known`` does not list).
- one dialect with ``--known FILE``: 1 when a test fails that FILE does not list (a node
  id or an ``fnmatch`` pattern per line; ``#`` starts a comment).
- one dialect without: 1 on any failure or error.

``--failures-out FILE`` writes every failure as ``<dialect> <node id>`` lines.
``--installed`` runs the installed agentdb; otherwise the checkout's (an in-place build,
``PYTHONPATH``, as ``sa_tests.sh`` sets it).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from run import counts, fresh_database, run_streaming, sqlalchemy_pytest_options

DEFAULT_TESTS = ["test/ext/asyncio/test_cancellation.py"]


def cache_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    env = os.environ.get("AGENTDB_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "agentdb"


def sqlalchemy_source(cache: Path, sa_version: str) -> Path:
    """The unpacked sdist of SQLAlchemy ``sa_version`` under ``cache`` (fetched when
    missing)."""
    tree = cache / f"sqlalchemy-{sa_version}"
    if (tree / "test").is_dir():
        print(f"sa-tests: SQLAlchemy {sa_version} source in {tree} (cached)", flush=True)
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"sqlalchemy-{sa_version}.tar.gz"
    if not archive.is_file():
        print(f"sa-tests: downloading the SQLAlchemy {sa_version} sdist into {cache}", flush=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "--disable-pip-version-check",
                    "-q",
                    "-d",
                    tmp,
                    f"sqlalchemy=={sa_version}",
                ],
                check=True,
            )
            found = sorted(Path(tmp).glob("*.tar.gz"))
            if len(found) != 1:
                raise RuntimeError(f"pip download left {[p.name for p in found]}, not one sdist")
            os.replace(found[0], archive)  # whole or absent, also for a concurrent run
    # Unpack beside the tree, then rename: a partial tree is never taken for a whole one.
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - Python without the extraction filters
                tar.extractall(tmp)  # our own download of a PyPI sdist
        unpacked = [p for p in Path(tmp).iterdir() if p.is_dir()]
        if len(unpacked) != 1 or not (unpacked[0] / "test").is_dir():
            raise RuntimeError(f"{archive} does not hold one source tree with test/")
        if tree.exists():  # a half-made tree of an interrupted run (no test/)
            shutil.rmtree(tree)
        try:
            os.replace(unpacked[0], tree)
        except OSError:
            if not (tree / "test").is_dir():  # not a concurrent run that got there first
                raise
    print(f"sa-tests: SQLAlchemy {sa_version} source unpacked in {tree}", flush=True)
    return tree


# "FAILED test/x.py::FooTest_postgresql+agentdb_async_15_20::test_y[a-b] - message"
_FAILURE_LINE = re.compile(r"^(FAILED|ERROR) (\S+?)(?: - .*)?$")
_BACKEND_SUFFIX = re.compile(r"_postgresql\+[^:\[]*(?=::)")


def normalized(node_id: str) -> str:
    """A node id without the backend suffix of SQLAlchemy's generated test classes."""
    return _BACKEND_SUFFIX.sub("", node_id)


def read_known(path: Path) -> list[str]:
    """The node ids or patterns of a ``--known`` file (comments and blanks dropped)."""
    out = []
    for line in path.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            out.append(entry)
    return out


def is_known(node_id: str, known: list[str]) -> bool:
    return any(node_id == k or fnmatch.fnmatchcase(node_id, k) for k in known)


def _failure_collector(failures: set[str]) -> Callable[[str], None]:
    """An ``on_line`` for ``run_streaming`` adding the failed tests of ``-rfE`` lines."""

    def note(line: str) -> None:
        m = _FAILURE_LINE.match(line.rstrip("\n"))
        if m:
            failures.add(normalized(m.group(2)))

    return note


@dataclass
class PathRun:
    """One pytest run of one TEST_PATH on one dialect."""

    path: str
    counts: dict[str, int]
    seconds: float
    complete: bool
    failures: set[str] = field(default_factory=set)


def run_paths(
    dialect: str, tests: list[str], tree: Path, pytest_args: list[str], keep_db: bool
) -> list[PathRun]:
    """Each TEST_PATH as a pytest run of its own, on one database made afresh."""
    dbname = f"{os.environ.get('SA_TESTS_DBNAME', 'sqla_tests')}_{dialect}"
    runs = []
    with fresh_database(dbname, keep_db, label="sa-tests") as server:
        url = f"postgresql+{dialect}://scott:tiger@{server}/{dbname}"
        for path in tests:
            cmd = [
                sys.executable,
                "-s",  # no user site: SQLAlchemy's conftest then puts no lib/ first on sys.path
                "-m",
                "pytest",
                path,
                *sqlalchemy_pytest_options(url, timeout=300),
                "--tb=short",
                *pytest_args,
            ]
            print(f"sa-tests: {dialect} on {server}/{dbname}: {path}", flush=True)
            started = time.monotonic()
            failures: set[str] = set()
            rc, summary = run_streaming(cmd, tree, on_line=_failure_collector(failures))
            elapsed = time.monotonic() - started
            c = counts(summary)
            run = PathRun(path, c, elapsed, rc in (0, 1) and bool(summary), failures)
            runs.append(run)
            print(
                f"sa-tests {dialect} {path}: passed {c['passed']} failed {c['failed']} "
                f"errors {c['errors']} skipped {c['skipped']} ({elapsed:.0f} s, "
                f"pytest exit {rc})",
                flush=True,
            )
    return runs


def summarize(dialect: str, runs: list[PathRun], sa_version: str) -> None:
    total = {k: sum(r.counts[k] for r in runs) for k in ("passed", "failed", "errors", "skipped")}
    seconds = sum(r.seconds for r in runs)
    print(
        f"sa-tests {dialect}: passed {total['passed']} failed {total['failed']} "
        f"errors {total['errors']} skipped {total['skipped']} (SQLAlchemy {sa_version}; "
        f"{seconds:.0f} s; {len(runs)} path(s))",
        flush=True,
    )


def main() -> int:
    argv = sys.argv[1:]
    pytest_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, pytest_args = argv[:i], argv[i + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tests", nargs="*", metavar="TEST_PATH", default=DEFAULT_TESTS)
    parser.add_argument("--dialect", choices=["agentdb", "asyncpg", "both"], default="agentdb")
    parser.add_argument("--installed", action="store_true")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--known", type=Path)
    parser.add_argument("--failures-out", type=Path)
    args = parser.parse_args(argv)

    sa_version = version("sqlalchemy")
    started = time.monotonic()
    tree = sqlalchemy_source(cache_dir(args.cache), sa_version)
    missing = [t for t in args.tests if not (tree / t.split("::")[0]).exists()]
    if missing:
        parser.error(f"not in SQLAlchemy {sa_version}'s source: {', '.join(missing)}")
    print(f"sa-tests: source ready in {time.monotonic() - started:.0f} s", flush=True)
    known = read_known(args.known) if args.known is not None else []

    dialects = ["asyncpg", "agentdb"] if args.dialect == "both" else [args.dialect]
    results = {d: run_paths(d, args.tests, tree, pytest_args, args.keep_db) for d in dialects}
    for d in dialects:
        summarize(d, results[d], sa_version)
    failed = {d: set().union(*(r.failures for r in results[d])) for d in dialects}
    if args.failures_out is not None:
        args.failures_out.write_text(
            "".join(f"{d} {t}\n" for d in dialects for t in sorted(failed[d]))
        )

    status = 0
    incomplete = [f"{d} {r.path}" for d in dialects for r in results[d] if not r.complete]
    if incomplete:
        print(f"sa-tests: pytest did not complete: {', '.join(incomplete)}", file=sys.stderr)
        status = 1
    if args.dialect == "both":
        print("\n| TEST_PATH | asyncpg passed/failed/errors | agentdb passed/failed/errors | "
              "asyncpg s | agentdb s |")
        for a, b in zip(results["asyncpg"], results["agentdb"], strict=True):
            ca, cb = a.counts, b.counts
            print(
                f"| `{a.path}` | {ca['passed']}/{ca['failed']}/{ca['errors']} | "
                f"{cb['passed']}/{cb['failed']}/{cb['errors']} | {a.seconds:.0f} | "
                f"{b.seconds:.0f} |"
            )
        beyond = failed["agentdb"] - failed["asyncpg"]
        only_asyncpg = failed["asyncpg"] - failed["agentdb"]
        print(f"\nsa-tests: failing on asyncpg too: {len(failed['asyncpg'] & failed['agentdb'])}")
        print(f"sa-tests: failing on asyncpg only: {len(only_asyncpg)}")
        for t in sorted(only_asyncpg):
            print(f"  asyncpg only: {t}")
        unexplained = sorted(t for t in beyond if not is_known(t, known))
        print(f"sa-tests: failing on agentdb beyond asyncpg: {len(beyond)} "
              f"({len(beyond) - len(unexplained)} listed in --known)")
        for t in sorted(beyond):
            print(f"  beyond asyncpg{' (known)' if is_known(t, known) else ''}: {t}")
        if unexplained:
            status = 1
    else:
        d = dialects[0]
        if args.known is not None:
            unexpected = sorted(t for t in failed[d] if not is_known(t, known))
            print(f"sa-tests {d} vs {args.known}: {len(failed[d])} failure(s), "
                  f"{len(unexpected)} not listed there")
            for t in unexpected:
                print(f"  not in {args.known.name}: {t}", file=sys.stderr)
            if unexpected:
                status = 1
        else:
            if failed[d] or any(r.counts["failed"] or r.counts["errors"] for r in results[d]):
                status = 1
        if not any(r.counts["passed"] for r in results[d]):
            print("sa-tests: no test passed", file=sys.stderr)
            status = 1
    if status:
        print("sa-tests: FAILED", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
