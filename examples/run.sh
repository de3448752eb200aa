#!/usr/bin/env bash
# The main job: set up a fresh Debian machine (as .ci/run does), then run the demo.
# Server: $DATABASE_URL, else localhost:5432, else a throwaway cluster (see demo.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=../.ci/setup.sh
source .ci/setup.sh
cd /  # import the installed agentdb, not the checkout's (which has no built extension)
exec "$VPY" "$ROOT/examples/demo.py" "$@"
