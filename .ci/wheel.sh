# shellcheck shell=bash
# CI's wheel pass: the test wheel that packaging/build-wheel.sh makes (AGENTDB_TESTING=1,
# libpq 18 with OpenSSL bundled; the libpq build is cached in ~/.cache/agentdb, so only a
# machine's first run builds it), installed into a clean venv and tested with the system's
# libpq out of reach. Source it after .ci/setup.sh; `_wheel_pass DIR` builds and checks,
# then sets $WHEEL_PY (a python that runs inside the libpq-less mount namespace) and
# $WHEEL_VENV (the venv, for its pytest script).
#
# How the system's libpq is hidden, and why the tests still run:
# - `unshare --mount` gives the test process a mount namespace of its own, in which an
#   empty file is bind-mounted over every libpq.so* that ld.so.cache lists
#   (/usr/lib/x86_64-linux-gnu/libpq.so.5.15 on Debian 12): loading it fails ("file too
#   short") for the Python process and everything it starts. Not LD_LIBRARY_PATH or
#   LD_PRELOAD: the dynamic loader's own search finds nothing usable, which is checked
#   (ctypes.CDLL("libpq.so.5") must fail in the namespace) before the tests run.
# - The suite itself needs PostgreSQL's client tools (psql for admin SQL, pg_isready,
#   pg_ctl/initdb for throwaway clusters), which link the system's libpq. They are reached
#   through wrappers (PG_BINDIR, which agentdb.testing.cluster looks at first) that run
#   the real binaries with LD_LIBRARY_PATH on a private copy of the system's libpq. Only
#   those child processes see that copy; the Python process (agentdb's) has no
#   LD_LIBRARY_PATH, and its extension loads the libpq inside the wheel (its RUNPATH,
#   $ORIGIN/../agentdb_pg.libs): checked through /proc/self/maps before the tests run.

_wheel_pass() {
    local dir=$1
    if ! unshare --mount true 2>/dev/null; then
        echo "error: the wheel pass needs a mount namespace (unshare --mount: run as root)" >&2
        return 1
    fi
    mkdir -p "$dir"
    # The wrappers run as user postgres too (runuser, for initdb/pg_ctl): let it pass
    # through the (0700) log directory, without listing it.
    chmod o+x "$(dirname "$dir")" "$dir"
    local python
    python=$("$PYTHON" -c 'import sys; print(sys.executable)')
    _log "wheel: AGENTDB_TESTING=1 bash packaging/build-wheel.sh --python $python"
    rm -rf "$ROOT/dist/testing"
    AGENTDB_TESTING=1 bash "$ROOT/packaging/build-wheel.sh" --python "$python" || return 1
    local wheel
    wheel=$(ls "$ROOT"/dist/testing/agentdb_pg-*.whl) || return 1

    WHEEL_VENV="$dir/venv"
    _log "wheel: a clean venv, pip install $(basename "$wheel")[test]"
    # (Called as an `if` condition, where set -e is off: each step returns on failure.)
    "$python" -m venv "$WHEEL_VENV" || return 1
    "$WHEEL_VENV/bin/python" -m pip install -q "$wheel[test]" 2>&1 \
        | { grep -v "^WARNING: Location 'file:.* is ignored" || true; }
    [ "${PIPESTATUS[0]}" -eq 0 ] || return 1

    # A private copy of the system's libpq, for PostgreSQL's tools only.
    local hide=() lib real bindir tool
    mkdir -p "$dir/system-libpq" "$dir/pgbin"
    while read -r lib; do
        real=$(readlink -f "$lib")
        [ -f "$real" ] || continue
        hide+=("$real")
        cp "$real" "$dir/system-libpq/$(basename "$lib")"
    done < <(ldconfig -p | awk '/libpq\.so/ {print $NF}' | sort -u)
    [ "${#hide[@]}" -gt 0 ] || { echo "error: ldconfig lists no system libpq to hide" >&2; return 1; }
    chmod -R a+rX "$dir/system-libpq"
    bindir=$(cd / && "$VPY" -c 'from agentdb.testing.cluster import find_bindir; print(find_bindir())') \
        || return 1
    for tool in "$bindir"/*; do
        printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$dir/system-libpq" "$tool" \
            >"$dir/pgbin/$(basename "$tool")"
    done
    chmod -R a+rx "$dir/pgbin"
    : >"$dir/empty"

    WHEEL_PY="$dir/python-without-system-libpq"
    {
        echo '#!/bin/sh'
        echo '# The wheel venv'"'"'s python in a mount namespace where the system libpq is empty.'
        printf 'export PG_BINDIR=%s\n' "$dir/pgbin"
        printf 'exec unshare --mount --propagation private -- /bin/sh -c '"'"'set -e\n'
        printf 'for f in %s; do mount --bind %s "$f"; done\n' "${hide[*]}" "$dir/empty"
        printf 'exec "$@"'"'"' sh %s "$@"\n' "$WHEEL_VENV/bin/python"
    } >"$WHEEL_PY"
    chmod +x "$WHEEL_PY"

    _log "wheel: the system's libpq hidden, agentdb's libpq from the wheel"
    (cd / && "$WHEEL_PY" - <<'PY'
import ctypes, os, sys
try:
    ctypes.CDLL("libpq.so.5")
except OSError as e:
    print("==> wheel: libpq.so.5 cannot be loaded here:", e)
else:
    sys.exit("error: the system's libpq.so.5 still loads in the namespace")
import agentdb, agentdb._core
with open("/proc/self/maps") as f:
    libpq = sorted({line.split()[-1] for line in f if "/libpq" in line})
site = os.path.dirname(os.path.dirname(agentdb.__file__))
print("==> wheel: agentdb", agentdb.__file__)
print("==> wheel: libpq", agentdb.libpq_version(), "mapped from", libpq)
if len(libpq) != 1 or not libpq[0].startswith(os.path.join(site, "agentdb_pg.libs") + "/"):
    sys.exit("error: agentdb's libpq is not the wheel's")
if agentdb.libpq_version() < 170000:
    sys.exit("error: the wheel's libpq is older than 17")
PY
    ) || return 1
    ldd "$WHEEL_VENV"/lib/python3*/site-packages/agentdb/_core*.so | sed 's/^/==> wheel: ldd: /'
}

# Beside the core's tests (.ci/run's CORE_TESTS), the wheel pass runs these: TLS through the
# bundled OpenSSL, and the keywords libpq 16-17 bring.
WHEEL_EXTRA_TESTS=(tests/test_adv_tls.py tests/test_libpq_security.py)

# Alone: `bash .ci/wheel.sh [pytest args]` (after .ci/setup.sh made .venv; default: the
# tests above and tests/test_connection.py).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    VPY="${VPY:-$ROOT/.venv/bin/python}"
    PYTHON="${PYTHON:-python3}"
    _log() { printf '==> %s\n' "$*"; }
    wheel_dir=$(mktemp -d)
    trap 'rm -rf "$wheel_dir"' EXIT
    _wheel_pass "$wheel_dir/wheel"
    cd "$ROOT"
    if [ "$#" -eq 0 ]; then
        set -- tests/test_connection.py "${WHEEL_EXTRA_TESTS[@]}"
    fi
    "$WHEEL_PY" -X dev "$WHEEL_VENV/bin/pytest" --asyncio-debug -q -p no:cacheprovider "$@"
fi
