"""The lifecycle of one model as assets: one module per stage, in lineage order."""

from pathlib import Path

from ml_platform.assets import deployment, evaluation, features, ingestion, monitoring, training
from ml_platform.specs import ModelSpec


def build(spec: ModelSpec, home: Path) -> list:
    """Every asset (with its checks) of one model's graph."""
    return [
        *ingestion.build(spec, home),
        *features.build(spec),
        *training.build(spec),
        *evaluation.build(spec),
        *deployment.build(spec),
        *monitoring.build(spec),
    ]
