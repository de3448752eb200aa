"""The example FastAPI service: agents over agentdb (``app`` uses on_event, ``app_lifespan`` lifespan)."""
