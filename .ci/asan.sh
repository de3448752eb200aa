#!/usr/bin/env bash
# shellcheck shell=bash
# The C core built with AddressSanitizer, for the tests of the code that calls into Python
# while it reads Python containers (the encoders, COPY payloads): a read past a list's end
# or of a freed object fails with ASan's report instead of passing by luck.
#
#   bash .ci/asan.sh [pytest args]   # build, then run $ASAN_TESTS (or the args) under ASan
#
# .ci/run sources it after .ci/setup.sh and calls `_asan_build DIR`, which builds a copy of
# agentdb with -fsanitize=address into DIR (the installed build in the venv is untouched;
# the same approach as .ci/libpq_newer.sh) and sets $ASAN_PY: a wrapper that runs the
# venv's python with libasan preloaded (CPython itself is not instrumented),
# PYTHONMALLOC=malloc (so Python objects are malloc'd blocks ASan watches), leak
# detection off (CPython keeps memory until exit) and DIR's copy first on PYTHONPATH.

ASAN_TESTS=(tests/test_encoder_safety.py tests/test_copy.py tests/test_codecs.py tests/test_types.py
    tests/test_vector.py tests/test_type_codecs.py tests/test_copy_variants.py)
# pytest's default fd capture would swallow ASan's report of a test that dies: it writes to
# file descriptor 2, which --capture=fd points at a file that nobody reads after a crash.
ASAN_PYTEST_ARGS=(--capture=sys)

_asan_build() {
    local dir=$1 src="$1/src-tree" site="$1/site" libasan
    libasan=$(gcc -print-file-name=libasan.so)
    if [ ! -e "$libasan" ]; then
        echo "error: gcc has no libasan.so (apt-get install libgcc-12-dev)" >&2
        return 1
    fi
    mkdir -p "$src" "$site"
    cp -r "$ROOT/agentdb" "$ROOT/src" "$ROOT/setup.py" "$ROOT/pyproject.toml" "$ROOT/README.md" "$src/"
    _log "asan: build_ext --inplace in $src (-fsanitize=address, AGENTDB_WERROR=1)"
    (cd "$src" && CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -O1" \
        LDFLAGS="-fsanitize=address" AGENTDB_WERROR=1 \
        "$VPY" setup.py -q build_ext --inplace 2>&1 | { grep -v -i "beta\|warnings.warn" || true; }) ||
        return 1

    # libasan is preloaded into the test interpreter only: psql, pg_isready and initdb
    # hang with it.  sitecustomize takes LD_PRELOAD out of the environment the interpreter
    # passes on and points sys.executable at the wrapper, so that Python children (the
    # tests' subprocesses) run under ASan too.
    cat >"$site/sitecustomize.py" <<'PY'
"""The AddressSanitizer run's interpreter (.ci/asan.sh): the programs it starts get no
libasan; Python ones get it back through the wrapper that sys.executable names."""

import os
import sys

os.environ.pop("LD_PRELOAD", None)
sys.executable = os.environ.get("AGENTDB_ASAN_PYTHON", sys.executable)
PY
    ASAN_PY="$dir/python"
    {
        echo '#!/bin/sh'
        echo 'export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1" PYTHONMALLOC=malloc'
        echo "export PYTHONPATH=\"$site:$src\" AGENTDB_ASAN_PYTHON=\"$ASAN_PY\""
        echo "LD_PRELOAD=\"$libasan\" exec \"$VPY\" \"\$@\""
    } >"$ASAN_PY"
    chmod +x "$ASAN_PY"

    # From / so that the checkout's agentdb/ is not the one imported.
    (cd / && "$ASAN_PY" - "$src" <<'PY'
import sys

import agentdb._core as core

print("==> asan: agentdb._core from", core.__file__)
asan = any("libasan" in line for line in open("/proc/self/maps"))
sys.exit(0 if asan and core.__file__.startswith(sys.argv[1]) else 1)
PY
    )
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    VPY="${VPY:-$ROOT/.venv/bin/python}"
    _log() { printf '==> %s\n' "$*"; }
    asan_dir=$(mktemp -d)
    trap 'rm -rf "$asan_dir"' EXIT
    _asan_build "$asan_dir"
    cd "$ROOT"
    if [ "$#" -eq 0 ]; then
        set -- "${ASAN_TESTS[@]}"
    fi
    "$ASAN_PY" "$(dirname "$VPY")/pytest" -q -p no:cacheprovider "${ASAN_PYTEST_ARGS[@]}" "$@"
fi
