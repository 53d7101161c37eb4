"""The Dagster definitions: one asset graph, sensor set and group per model spec."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions

from ml_platform import assets, automation
from ml_platform.resources import Lake, MLflowTracking, PlatformDatabase
from ml_platform.settings import database_url, mlflow_artifact_root, mlflow_tracking_uri, platform_home
from ml_platform.specs import load_specs


def build_definitions(specs_dir: str | Path | None = None, home: str | Path | None = None) -> Definitions:
    """Definitions for every spec in ``specs_dir``, keeping state under ``home``."""
    home = Path(home).resolve() if home else platform_home()
    specs = load_specs(specs_dir)
    model_defs = [Definitions(assets=assets.build(spec, home), sensors=automation.build(spec, home)) for spec in specs]
    shared = Definitions(
        resources={
            "lake": Lake(home=str(home)),
            "database": PlatformDatabase(url=database_url(home)),
            "mlflow": MLflowTracking(tracking_uri=mlflow_tracking_uri(home), artifact_root=mlflow_artifact_root(home)),
        }
    )
    return Definitions.merge(*model_defs, shared)


defs = build_definitions()
