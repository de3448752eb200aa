#!/usr/bin/env bash
# Fuzz the C core's result decoders: one command.
#
#   .ci/fuzz.sh [ITERATIONS]        (default 1,000,000; AGENTDB_FUZZ_SEED picks the seed)
#
# Runs tests/faults/fuzz_decoders.py: a mutation fuzzer over agentdb._core._decode(oid,
# data, binary) for every supported OID, seeded with valid encodings of edge values;
# then, when atheris is installed (pip install atheris), the same target under
# atheris/libFuzzer for as many runs. A crash kills the process: the input is in
# /tmp/agentdb-fuzz-last.bin (4-byte OID, 1-byte binary flag, data). Exit 0: no crash,
# no SystemError/MemoryError. Uses the installed agentdb (or the in-place build).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY="${AGENTDB_PYTHON:-${VPY:-$ROOT/.venv/bin/python}}"
[ -x "$PY" ] || PY=/work/venv/bin/python
[ -x "$PY" ] || PY=python3
N="${1:-1000000}"
cd "$ROOT"
echo "==> mutation fuzzer: $N inputs"
"$PY" -X faulthandler tests/faults/fuzz_decoders.py --iterations "$N" \
    --seed "${AGENTDB_FUZZ_SEED:-1}"
if "$PY" -c 'import atheris' 2>/dev/null; then
    echo "==> atheris: $N runs"
    "$PY" -X faulthandler tests/faults/fuzz_decoders.py --atheris -runs="$N" -max_len=512 \
        2>&1 | grep -E "^(#$N|Done|==[0-9]+== ERROR|.*FINDING|Traceback)" || true
    [ "${PIPESTATUS[0]}" -eq 0 ]
else
    echo "==> atheris not installed (pip install atheris): skipped"
fi
