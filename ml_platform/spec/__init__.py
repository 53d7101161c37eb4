"""The model spec: one YAML file per clinical model, parsed into a typed, validated object.

A spec is data: it says everything the platform needs to build a model's asset graph
(where data lands, the data contract, target and task, features, sensitive attributes,
estimator, split, gates, monitoring, deployment) and never runs code.
"""

from ml_platform.spec.loading import SHIPPED_SPECS_DIR, SpecError, get_spec, load_spec, load_specs, specs_dir
from ml_platform.spec.model import (
    Calibration,
    ChampionMargin,
    Column,
    Contract,
    Deployment,
    DriftPolicy,
    Estimator,
    Fairness,
    Features,
    Gates,
    ModelSpec,
    Monitoring,
    PerformancePolicy,
    RetrainPolicy,
    Source,
    Split,
)
from ml_platform.spec.vocabulary import ColumnType, Task

__all__ = [
    "Calibration",
    "ChampionMargin",
    "Column",
    "ColumnType",
    "Contract",
    "Deployment",
    "DriftPolicy",
    "Estimator",
    "Fairness",
    "Features",
    "Gates",
    "ModelSpec",
    "Monitoring",
    "PerformancePolicy",
    "RetrainPolicy",
    "SHIPPED_SPECS_DIR",
    "Source",
    "SpecError",
    "Split",
    "Task",
    "get_spec",
    "load_spec",
    "load_specs",
    "specs_dir",
]
