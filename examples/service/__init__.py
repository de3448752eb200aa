"""The example FastAPI service over agentdb.

``app``: startup/shutdown with on_event; ``app_lifespan``: with a lifespan.
"""
