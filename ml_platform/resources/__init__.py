"""Resources: the data lake, MLflow, the platform database and the serving endpoint, from the platform settings."""

from pathlib import Path

from ml_platform.resources.database import PlatformDatabase
from ml_platform.resources.endpoint import ServingEndpoint
from ml_platform.resources.mlflow import MLflowTracking
from ml_platform.resources.storage import Lake
from ml_platform.settings import database_url, endpoint_token, endpoint_url, mlflow_artifact_root, mlflow_tracking_uri

__all__ = ["Lake", "MLflowTracking", "PlatformDatabase", "ServingEndpoint", "platform_resources"]


def platform_resources(home: Path) -> dict:
    """The resources of a platform home, by the names the assets ask for; the CLI uses the same."""
    return {
        "lake": Lake(home=str(home)),
        "database": PlatformDatabase(url=database_url(home)),
        "mlflow": MLflowTracking(tracking_uri=mlflow_tracking_uri(home), artifact_root=mlflow_artifact_root(home)),
        "endpoint": ServingEndpoint(url=endpoint_url(), token=endpoint_token()),
    }
