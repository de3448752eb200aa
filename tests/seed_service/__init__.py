"""A service in the seed's shape (``../shared/seed/``): its own ``database.py`` and an app
written as the seed page shows, whose one change for agentdb is its import."""
