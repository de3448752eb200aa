#!/usr/bin/env bash
# Memory check of the C core: one command.
#
#   .ci/valgrind.sh [DSN]
#
# Builds agentdb/_core in place (-O0 -g), then runs tests/faults/core_paths.py (connect,
# every codec, errors, pipelining, timeouts and cancel, a killed backend, the pool,
# malformed input to the decoders) under valgrind memcheck with PYTHONMALLOC=malloc and
# .ci/valgrind.supp for CPython's own noise. Prints valgrind's summary and the records
# ("definitely lost" leaks and errors) whose stack passes through agentdb's _core;
# exits 1 when there is any. Needs valgrind (apt-get install valgrind) and a server
# (default: 127.0.0.1:5432, database agentdb_test).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY="${AGENTDB_PYTHON:-${VPY:-$ROOT/.venv/bin/python}}"
[ -x "$PY" ] || PY=/work/venv/bin/python
[ -x "$PY" ] || PY=python3
DSN="${1:-postgresql://postgres@127.0.0.1:5432/agentdb_test}"
command -v valgrind >/dev/null || { echo "valgrind not installed: apt-get install valgrind" >&2; exit 2; }
log=$(mktemp /tmp/agentdb-valgrind.XXXXXX.log)

echo "==> building agentdb/_core in place with -O0 -g"
AGENTDB_TESTING=1 CFLAGS="-O0 -g" "$PY" setup.py build_ext --inplace --force >"$log.build" 2>&1 \
    || { cat "$log.build"; exit 1; }

echo "==> valgrind memcheck (log: $log)"
set +e
# --fullpath-after=: frames name their source by its path (src/codecs/scalar.c:123), which
# is what tells agentdb's frames below; by default valgrind prints scalar.c:123 only.
PYTHONMALLOC=malloc PYTHONPATH="$ROOT" valgrind --tool=memcheck --fullpath-after= --leak-check=full \
    --show-leak-kinds=definite --errors-for-leak-kinds=definite --num-callers=40 \
    --suppressions="$ROOT/.ci/valgrind.supp" --log-file="$log" \
    "$PY" "$ROOT/tests/faults/core_paths.py" "$DSN"
rc=$?
set -e
[ "$rc" -eq 0 ] || { echo "core_paths.py failed under valgrind (exit $rc)"; tail -30 "$log"; exit 1; }

"$PY" - "$log" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
pid = re.search(r"^==(\d+)==", text, re.M).group(1)
body = [l[len(f"=={pid}== "):] if l.startswith(f"=={pid}==") else l for l in text.splitlines()]
records, cur = [], []
for line in body:
    if not line.strip():
        if cur: records.append(cur)
        cur = []
    else:
        cur.append(line)
if cur: records.append(cur)
ours = re.compile(r"_core\.cpython|src/(codecs/)?\w+\.c")
kinds = re.compile(r"definitely lost|Invalid (read|write|free)|uninitialised|Mismatched free|"
                   r"overlap|Source and destination|invalid file descriptor", re.I)
hits = [r for r in records if kinds.search(r[0]) and any(ours.search(l) for l in r)]
for r in records:
    if r[0].startswith(("HEAP SUMMARY", "LEAK SUMMARY")):
        print("\n".join(r))
print(*[l for l in body if l.startswith("ERROR SUMMARY")], sep="\n")
m = re.search(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
print(f"\nagentdb frames: {len(hits)} record(s) (definitely lost or errors) through _core")
for r in hits[:20]:
    print("-" * 60)
    print("\n".join(r[:25]))
sys.exit(1 if hits else 0)
PYEOF
