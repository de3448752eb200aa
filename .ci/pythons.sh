# shellcheck shell=bash
# The core on the other CPythons this machine has (pyenv's 3.10, 3.12 and 3.13; the main
# venv's is 3.11): for each, a venv of its own, agentdb built and installed into it with
# '.[test]' (AGENTDB_TESTING=1, AGENTDB_WERROR=1: a warning against that CPython's headers
# fails the build), then the tests of the C core's paths ($PYTHONS_TESTS), or the whole
# suite with AGENTDB_CI_PYTHONS_FULL=1.  A CPython that is missing fails the step.
#
# .ci/run sources it after .ci/setup.sh and calls `_pythons_run`, which calls .ci/run's
# run_pytest once per CPython (pytest py3.10, py3.12, py3.13 in the summary).  The venvs
# are kept outside the checkout (CI starts from a clean one), in $AGENTDB_PYTHONS_VENVS
# (default ${XDG_CACHE_HOME:-~/.cache}/agentdb/pythons), so that only agentdb is built
# again on the next run; the test dependencies come from pip's cache.
#
#   AGENTDB_CI_PYTHONS=0 bash .ci/run         # leaves the step out
#   AGENTDB_CI_PYTHONS_FULL=1 bash .ci/run    # the whole suite on every CPython
#
# Free-threaded CPython (3.13t): none is installed here and none can be had (pyenv builds
# from python.org, which this machine cannot reach), so none is tested.

PYTHONS_VERSIONS=(3.10 3.12 3.13)
# The C core's paths: connections, pipelining, results, every type both ways, COPY, the
# pool, cancel, the statement cache, the libpq handles and the GC.  Not test_codecs.py
# (655 small tests, 3 minutes a CPython; test_types.py and test_encoder_safety.py cover
# the codecs) nor the pool's leak check (43,000 statements).  Measured on this 2-core
# machine, venvs kept: 62, 65 and 57 s for 3.10, 3.12 and 3.13 (build and tests) when idle,
# 3 minutes in all; 219 s for 3.10 alone while four other jobs loaded it (load average 9
# to 13).  Making a venv the first time adds a minute or two (pip's cache).
PYTHONS_TESTS=(tests/test_connection.py tests/test_pool.py tests/test_copy.py
    tests/test_types.py tests/test_record.py tests/test_errors.py tests/test_handles.py
    tests/test_gc_tracking.py tests/test_encoder_safety.py tests/test_libpq17.py
    tests/test_core_state.py tests/test_adv_core_fixes.py
    --deselect tests/test_pool.py::test_leak_check_many_queries_through_the_pool)

# The newest pyenv build of CPython $1 (not a free-threaded "t" build), or nothing.
_pythons_find() {
    local v=$1 d best=""
    for d in "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v".*; do
        [[ -x "$d/bin/python3" && "$(basename "$d")" =~ ^$v\.[0-9]+$ ]] || continue
        best=$(printf '%s\n%s\n' "$best" "$d" | sed '/^$/d' | sort -V | tail -n 1)
    done
    printf '%s' "$best"
}

# Make (or reuse) the venv of CPython $1 at $2 and install agentdb into it. 0 => ready.
_pythons_venv() {
    local py=$1 venv=$2
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        rm -rf "$venv"
        "$py" -m venv "$venv" || return 1
    fi
    rm -rf "$ROOT/build"
    (cd "$ROOT" && PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q \
        '.[test]') 2>&1 | { grep -v "^WARNING: Location 'file:.* is ignored" || true; }
    [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
    (cd / && "$venv/bin/python" -c 'import agentdb, sys
print("==> agentdb", agentdb.__file__, "on", sys.version.split()[0], "libpq", agentdb.libpq_version())')
}

_pythons_run() {
    local venvs="${AGENTDB_PYTHONS_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/agentdb/pythons}"
    local v py venv name start tests=("${PYTHONS_TESTS[@]}")
    [ "${AGENTDB_CI_PYTHONS_FULL:-0}" = "1" ] && tests=(tests)
    mkdir -p "$venvs"
    for v in "${PYTHONS_VERSIONS[@]}"; do
        name="py$v"
        start=$SECONDS
        py=$(_pythons_find "$v")
        if [ -z "$py" ]; then
            echo "error: CPython $v is not installed (pyenv install $v)" >&2
            printf '1\n' >"$log_dir/$name.rc"
            echo "CPython $v missing" >"$log_dir/$name.log"
            continue
        fi
        venv="$venvs/$(basename "$py")"
        _log "CPython $v: $py, venv $venv"
        if ! _pythons_venv "$py/bin/python3" "$venv"; then
            echo "error: agentdb did not build or install on CPython $v" >&2
            printf '1\n' >"$log_dir/$name.rc"
            echo "build failed on CPython $v" >"$log_dir/$name.log"
            continue
        fi
        VPY="$venv/bin/python" VENV="$venv" run_pytest "$name" "${tests[@]}"
        _log "CPython $v: $((SECONDS - start)) s (build and tests)"
    done
}
