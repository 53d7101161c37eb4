"""Resources: the data lake and MLflow, configured from the platform settings."""

from ml_platform.resources.database import PlatformDatabase
from ml_platform.resources.mlflow import MLflowTracking
from ml_platform.resources.storage import Lake

__all__ = ["Lake", "MLflowTracking", "PlatformDatabase"]
