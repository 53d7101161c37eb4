"""The resources assets ask for by name, built from the platform settings; the CLI uses the same.

They are the core's own objects (the lake, the registry, the platform database, the
endpoint client), handed to Dagster as they are: assets annotate them with
``ResourceParam[...]``, so the core needs no Dagster types.
"""

from __future__ import annotations

from pathlib import Path

from ml_platform.serving.client import ServingEndpoint
from ml_platform.settings import database_url, get_settings
from ml_platform.store.database import PlatformDatabase
from ml_platform.store.lake import Lake
from ml_platform.store.registry import MLflowTracking


def platform_resources(home: Path) -> dict:
    """The resources of a platform home, by the names the assets ask for."""
    settings = get_settings()
    token = settings.endpoint_token.get_secret_value() if settings.endpoint_token else None
    return {
        "lake": Lake(home=str(home)),
        "database": PlatformDatabase(url=database_url(home)),
        "mlflow": MLflowTracking.for_home(home),
        "endpoint": ServingEndpoint(url=settings.endpoint_url, token=token),
    }
