"""Run the example FastAPI service (examples/service) with uvicorn, printing its URL.

The database: $DATABASE_URL if set, else PostgreSQL on localhost:5432 (user postgres, no
password; database ``agentplatform``, created on startup), else a throwaway cluster started
for the service and removed when it stops. ``--lifespan`` serves the lifespan variant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import uvicorn

from agentdb.settings import hide_password
from agentdb.testing.cluster import TempCluster, local_server_dsn

EXAMPLES = Path(__file__).resolve().parent


def serve(host: str, port: int, lifespan: bool) -> None:
    app = "service.app_lifespan:app" if lifespan else "service.app:app"
    print(f"database: {hide_password(os.environ['DATABASE_URL'])}")
    print(f"serving {app} on http://{host}:{port}  (try /agents and /health; Ctrl+C stops)")
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, app_dir=str(EXAMPLES), log_level="info")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--lifespan", action="store_true", help="serve the lifespan variant")
    args = parser.parse_args()
    if os.environ.get("DATABASE_URL"):
        serve(args.host, args.port, args.lifespan)
        return 0
    if local_server_dsn() is not None:
        os.environ["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/agentplatform"
        serve(args.host, args.port, args.lifespan)
        return 0
    with TempCluster() as cluster:
        os.environ["DATABASE_URL"] = cluster.dsn("agentplatform")
        print(f"throwaway cluster at {cluster.dsn()}")
        serve(args.host, args.port, args.lifespan)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
