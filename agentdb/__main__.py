"""``python -m agentdb``: see ``agentdb.cli``."""

from .cli import main

raise SystemExit(main())
