#!/usr/bin/env bash
# The main job: set up a fresh Debian machine (as .ci/run does), then serve the example
# FastAPI service (examples/service) with uvicorn and print its URL.
# Server: $DATABASE_URL, else localhost:5432, else a throwaway cluster (see serve.py).
# `examples/run.sh --demo` runs the native-API tour (demo.py) instead; other arguments go
# to serve.py (--port N, --host H, --lifespan).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=../.ci/setup.sh
source .ci/setup.sh
cd /  # import the installed agentdb, not the checkout's (which has no built extension)
if [ "${1:-}" = "--demo" ]; then
    shift
    exec "$VPY" "$ROOT/examples/demo.py" "$@"
fi
exec "$VPY" "$ROOT/examples/serve.py" "$@"
