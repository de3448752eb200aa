# shellcheck shell=bash
# Set-up shared by .ci/run and examples/run.sh; source it from bash (set -euo pipefail).
# On a fresh Debian machine it installs what is missing with apt-get (libpq-dev, the
# postgresql server and client binaries, a C compiler, Python headers and venv), makes a
# virtualenv in .venv inside the checkout and installs agentdb with its test and docs extras,
# building the C extension with -Werror (AGENTDB_WERROR=1), and builds pgvector for the
# installed servers when it is missing (agentdb_pgvector). It starts no server.
# After it: $ROOT (the checkout), $VENV, $VPY (the venv's python).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${AGENTDB_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
export AGENTDB_WERROR="${AGENTDB_WERROR:-1}"
# The build the tests run: with the core's test hooks and handle counters (setup.py).
export AGENTDB_TESTING="${AGENTDB_TESTING:-1}"

_log() { printf '==> %s\n' "$*"; }

_apt_updated=0
_apt_install() {
    [ "$#" -gt 0 ] || return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            echo "error: missing system packages: $*; install them (apt-get install $*)" >&2
            return 1
        fi
    fi
    if [ "$_apt_updated" -eq 0 ]; then
        _log "apt-get update"
        $sudo apt-get update -qq
        _apt_updated=1
    fi
    _log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

_have_pg_server_bins() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && return 0
    done
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1
}

_have_libpq_dev() {
    command -v pg_config >/dev/null 2>&1 || return 1
    [ -f "$(pg_config --includedir)/libpq-fe.h" ]
}

_py_has_headers() {
    "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("include"), "Python.h")))'
}

_py_has_venv() { "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; }

agentdb_system_packages() {
    local need=()
    _have_libpq_dev || need+=(libpq-dev)
    _have_pg_server_bins || need+=(postgresql)
    command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
    command -v pg_isready >/dev/null 2>&1 || need+=(postgresql-client)
    command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
    # the adversity suite: PgBouncer (scenario 19) and the openssl CLI (TLS, scenario 13)
    command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    # No python3 at all: its headers and venv come in the same install (checking for them
    # needs the interpreter, which is not there yet).
    command -v "$PYTHON" >/dev/null 2>&1 || need+=(python3 python3-dev python3-venv)
    if command -v "$PYTHON" >/dev/null 2>&1; then
        _py_has_headers || need+=(python3-dev)
        _py_has_venv || need+=(python3-venv)
    fi
    # shellcheck disable=SC2207
    need=($(printf '%s\n' "${need[@]}" | sort -u))
    _apt_install "${need[@]}"
    _py_has_headers || { echo "error: $PYTHON has no Python.h (install its -dev package)" >&2; return 1; }
}

# pgvector for every installed PostgreSQL server (tests/test_vector.py, bench workload
# "vector"): bookworm has no postgresql-NN-pgvector package, so it is built from Debian 13's
# source package (0.8: vector, halfvec, sparsevec; a deb-src line is added for it) against
# postgresql-server-dev-NN. Quick when vector.control is already there. As root only (the
# build installs into the server's directories).
_pgvector_src_list=/etc/apt/sources.list.d/agentdb-pgvector-src.sources
agentdb_pgvector() {
    local bindir ver pgc sharedir missing=()
    for bindir in /usr/lib/postgresql/*/bin; do
        [ -x "$bindir/postgres" ] || continue
        ver=$(basename "$(dirname "$bindir")")
        sharedir=/usr/share/postgresql/$ver
        [ -f "$sharedir/extension/vector.control" ] || missing+=("$ver")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "note: pgvector is missing for PostgreSQL ${missing[*]}; run .ci/setup.sh as root to build it" >&2
        return 0
    fi
    local pkgs=(make gcc libc6-dev dpkg-dev)
    for ver in "${missing[@]}"; do pkgs+=("postgresql-server-dev-$ver"); done
    _apt_install "${pkgs[@]}"
    # Debian 13's (stable) source package: its pool keeps the files the lists name, which
    # unstable's does not always do while a new version comes in.
    if [ ! -f "$_pgvector_src_list" ]; then
        _log "adding Debian 13's source packages (deb-src) for pgvector"
        printf '%s\n' "Types: deb-src" "URIs: http://deb.debian.org/debian" "Suites: trixie" \
            "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
            >"$_pgvector_src_list"
        apt-get update -qq
    fi
    local work
    work=$(mktemp -d)
    (
        cd "$work"
        _log "apt-get source pgvector"
        apt-get source -qq pgvector/trixie >/dev/null
        cd pgvector-*/
        for ver in "${missing[@]}"; do
            pgc=/usr/lib/postgresql/$ver/bin/pg_config
            _log "building pgvector $(sed -n 's/^default_version = .\(.*\)./\1/p' vector.control) for PostgreSQL $ver"
            # OPTFLAGS= : no -march=native (the build may move to another machine);
            # with_llvm=no: no JIT bitcode (clang not needed at install time).
            make -s clean PG_CONFIG="$pgc" >/dev/null
            make -s PG_CONFIG="$pgc" OPTFLAGS= with_llvm=no >/dev/null
            make -s install PG_CONFIG="$pgc" with_llvm=no >/dev/null
        done
    )
    rm -rf "$work"
}

agentdb_venv() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        _log "creating $VENV with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    VPY="$VENV/bin/python"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    _log "pip install '.[test,docs]' (AGENTDB_WERROR=$AGENTDB_WERROR)"
    # Not editable: the suite tests the installed package, the C extension built from
    # a clean build directory; a compiler warning fails the build.
    rm -rf "$ROOT/build"
    # pip rebuilds and reinstalls a local project on every install.
    # (The filter drops pip's notes about find-links folders this machine lacks.)
    (cd "$ROOT" && "$VPY" -m pip install -q '.[test,docs]') 2>&1 \
        | { grep -v "^WARNING: Location 'file:.* is ignored" || true; }
    # From / so that the checkout's agentdb/ (no extension in it) is not the one imported.
    (cd / && "$VPY" -c 'import agentdb, agentdb.testing.cluster
print("==> agentdb imports from", agentdb.__file__)')
}

agentdb_system_packages
agentdb_pgvector
agentdb_venv
