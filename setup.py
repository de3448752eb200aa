"""Build agentdb._core against the system libpq (found with pg_config, then pkg-config).

Linux only: that is what CI builds and tests (Debian 12, gcc, libpq 15 and 18).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup

INSTALL_HINT = (
    "agentdb needs libpq's headers and library to build. On Debian/Ubuntu: "
    "apt-get install libpq-dev python3-dev (or point PG_CONFIG at a pg_config)."
)

if not sys.platform.startswith("linux"):
    sys.exit("error: agentdb builds on Linux only (the platform CI builds and tests).")


def _run(*cmd: str) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def find_libpq() -> tuple[list[str], list[str]]:
    """Return (include_dirs, library_dirs) for libpq or exit with what to install."""
    pg_config = os.environ.get("PG_CONFIG", "pg_config")
    include = _run(pg_config, "--includedir")
    libdir = _run(pg_config, "--libdir")
    if include and libdir and os.path.exists(os.path.join(include, "libpq-fe.h")):
        return [include], [libdir]
    cflags = _run("pkg-config", "--cflags-only-I", "libpq")
    libs = _run("pkg-config", "--libs-only-L", "libpq")
    if cflags is not None:
        incs = [f[2:] for f in cflags.split() if f.startswith("-I")]
        libdirs = [f[2:] for f in (libs or "").split() if f.startswith("-L")]
        return incs, libdirs
    sys.exit("error: neither pg_config nor pkg-config found libpq. " + INSTALL_HINT)


# AGENTDB_LIBPQ_PREFIX=/opt/libpq builds against the libpq under that prefix (include/,
# lib/) instead of the system's, found again at run time (rpath): to test a newer libpq's
# code paths (PQsendPipelineSync, chunked rows) on a machine whose libpq is older.
libpq_prefix = os.environ.get("AGENTDB_LIBPQ_PREFIX")
runtime_library_dirs: list[str] = []
if libpq_prefix:
    include_dirs = [os.path.join(libpq_prefix, "include")]
    library_dirs = runtime_library_dirs = [os.path.join(libpq_prefix, "lib")]
else:
    include_dirs, library_dirs = find_libpq()


def libpq_sysconfdir() -> str:
    """libpq's compiled-in SYSCONFDIR (where it looks for pg_service.conf when
    PGSYSCONFDIR is unset), or "" when it cannot be found out."""
    if libpq_prefix:
        found = _run(os.path.join(libpq_prefix, "bin", "pg_config"), "--sysconfdir")
        if found:
            return found
        # PostgreSQL's default: PREFIX/etc, plus /postgresql unless the path says pgsql
        # or postgres (Makefile.global)
        etc = os.path.join(libpq_prefix, "etc")
        return etc if "pgsql" in etc or "postgres" in etc else os.path.join(etc, "postgresql")
    return _run(os.environ.get("PG_CONFIG", "pg_config"), "--sysconfdir") or ""


def c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


extra_compile_args = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]
if os.environ.get("AGENTDB_WERROR"):
    extra_compile_args.append("-Werror")
if os.environ.get("AGENTDB_DEBUG_BUILD"):
    extra_compile_args += ["-O0", "-g"]
# AGENTDB_TESTING=1 (the test set-up, .ci/setup.sh, exports it): the core's test hooks
# (_decode, _debug_state, _connections...) and its libpq handle counters are compiled in.
# A release build has neither.
testing_macros = [("AGENTDB_TESTING", "1")] if os.environ.get("AGENTDB_TESTING") else []

setup(
    ext_modules=[
        Extension(
            "agentdb._core",
            sources=sorted(glob.glob("src/**/*.c", recursive=True)),
            depends=sorted(glob.glob("src/**/*.h", recursive=True)),
            include_dirs=include_dirs,
            library_dirs=library_dirs,
            runtime_library_dirs=runtime_library_dirs,
            libraries=["pq", "m"],
            define_macros=[("AGENTDB_LIBPQ_SYSCONFDIR", c_string(libpq_sysconfdir()))]
            + testing_macros,
            extra_compile_args=extra_compile_args,
        )
    ],
)
