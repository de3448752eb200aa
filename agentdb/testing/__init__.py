"""Testing layer: a throwaway PostgreSQL (``cluster``) and the pytest plugin (``plugin``).

``app_client`` and ``override_get_session`` come from the plugin module (imported on
first use, so ``import agentdb.testing`` needs no pytest).
"""

from typing import Any

__all__ = ["app_client", "override_get_session"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'agentdb.testing' has no attribute {name!r}")
