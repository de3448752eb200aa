"""Run test files of SQLAlchemy's own test suite (its source distribution) on a fresh database.

Usage: ``python compliance/sa_tests.py [--dialect agentdb|asyncpg] [--installed] [--keep-db]
[--cache DIR] [TEST_PATH ...] [-- PYTEST_ARGS ...]`` (``compliance/sa_tests.sh`` wraps it).

TEST_PATH: paths inside SQLAlchemy's source tree (default: ``DEFAULT_TESTS``). The source
is the sdist of the installed SQLAlchemy version, fetched once with ``pip download
--no-deps --no-binary :all:`` into the cache directory (``--cache``, else
``$AGENTDB_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/agentdb``) and unpacked there;
later runs reuse it. Its tests run with ``--dburi postgresql+<dialect>://scott:tiger@...``
on a database made afresh (``$SA_TESTS_DBNAME``, default ``sqla_tests_<dialect>``; the
server and the set-up: ``compliance/run.py``), from the unpacked tree, with SQLAlchemy's
own requirements class and plugin, against the installed SQLAlchemy (``python -s``: the
sdist's conftest then leaves its ``lib/`` off ``sys.path``).

``--installed`` runs the installed agentdb; otherwise the checkout's (an in-place build,
``PYTHONPATH``, as ``sa_tests.sh`` sets it). Exit status: 0 when every test passed (or
skipped), else 1: no baseline, a failure or an error fails the run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from run import counts, fresh_database, run_streaming

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


def main() -> int:
    argv = sys.argv[1:]
    pytest_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, pytest_args = argv[:i], argv[i + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tests", nargs="*", metavar="TEST_PATH", default=DEFAULT_TESTS)
    parser.add_argument("--dialect", choices=["agentdb", "asyncpg"], default="agentdb")
    parser.add_argument("--installed", action="store_true")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args(argv)

    sa_version = version("sqlalchemy")
    started = time.monotonic()
    tree = sqlalchemy_source(cache_dir(args.cache), sa_version)
    missing = [t for t in args.tests if not (tree / t.split("::")[0]).exists()]
    if missing:
        parser.error(f"not in SQLAlchemy {sa_version}'s source: {', '.join(missing)}")
    fetched = time.monotonic() - started

    dbname = os.environ.get("SA_TESTS_DBNAME", f"sqla_tests_{args.dialect}")
    with fresh_database(dbname, args.keep_db, label="sa-tests") as server:
        url = f"postgresql+{args.dialect}://scott:tiger@{server}/{dbname}"
        cmd = [
            sys.executable,
            "-s",  # no user site: SQLAlchemy's conftest then puts no lib/ first on sys.path
            "-m",
            "pytest",
            *args.tests,
            "--dburi",
            url,
            "-p",
            "no:asyncio",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-q",
            "-rfE",
            "--tb=short",
            *pytest_args,
        ]
        print(f"sa-tests: {args.dialect} on {server}/{dbname}: {' '.join(args.tests)}", flush=True)
        ran = time.monotonic()
        rc, summary = run_streaming(cmd, tree)
        elapsed = time.monotonic() - ran

    c = counts(summary)
    print(
        f"sa-tests {args.dialect}: passed {c['passed']} failed {c['failed']} "
        f"errors {c['errors']} skipped {c['skipped']} (SQLAlchemy {sa_version}; "
        f"{elapsed:.0f} s, source {fetched:.0f} s; pytest exit {rc})"
    )
    if rc != 0 or not summary or c["failed"] or c["errors"] or not c["passed"]:
        print(f"sa-tests: FAILED (pytest exit {rc})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
