"""Ops layer: ``python -m agentdb`` runs the command line of ``agentdb.cli``."""

from .cli import main

raise SystemExit(main())
