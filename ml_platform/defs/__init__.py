"""The Dagster definitions: one asset graph, sensor set and group per model spec.

Each area module exposes the definitions of one model; this root builds them for every spec
and merges them with the platform's resources (as dagster-open-platform does). Assets call
the lifecycle core (``ml_platform.data``, ``training``, ``evaluation``, ``governance``,
``monitoring``) and add metadata; sensors and schedules only decide *when*.

Loading the code location configures the ``ml_platform`` loggers (text, or ECS JSON with
``ML_PLATFORM_LOG_FORMAT=json``) in every Dagster process that loads it: the code server
where sensors tick and each run worker where steps execute; and it makes every file those
processes create owner-only (``store.private``), as they write patient data under the home.
"""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, in_process_executor

from ml_platform.defs import deployment, evaluation, features, ingestion, monitoring, training, triggers
from ml_platform.defs.resources import platform_resources
from ml_platform.defs.sensors import (
    build_approval_sensor,
    build_automation_sensor,
    build_new_data_sensor,
    build_reconciler_sensor,
)
from ml_platform.governance.service import Governance
from ml_platform.logs import PLATFORM_LOGGER, configure_logging
from ml_platform.settings import platform_home
from ml_platform.spec import ModelSpec, load_specs
from ml_platform.store.private import private_dir, restrict_new_files


def model_assets(spec: ModelSpec, home: Path) -> list:
    """Every asset (with its checks) of one model's graph, in lineage order."""
    return [
        *ingestion.build(spec, home),
        *features.build(spec),
        *training.build(spec),
        *evaluation.build(spec),
        *deployment.build(spec),
        *monitoring.build(spec),
    ]


def model_automation(spec: ModelSpec, home: Path) -> Definitions:
    """Sensors and schedules of one model: new data, approvals, retrain triggers, monitoring windows."""
    governance, retrain = Governance.for_home(home), triggers.retrain_job(spec)
    sensors = [
        build_new_data_sensor(spec, spec.landing_dir(home)),
        build_automation_sensor(spec),
        triggers.build_drift_sensor(spec, governance, retrain),
        triggers.build_degradation_sensor(spec, governance, retrain),
        build_reconciler_sensor(spec, governance),
    ]
    if spec.monitoring.retrain.min_new_labelled_rows:
        sensors.append(triggers.build_new_outcomes_sensor(spec, governance, retrain))
    if spec.deployment.approval == "required":
        sensors.append(build_approval_sensor(spec, governance))
    return Definitions(sensors=sensors, schedules=triggers.build_schedules(spec, governance, retrain), jobs=[retrain])


def build_definitions(specs_dir: str | Path | None = None, home: str | Path | None = None) -> Definitions:
    """Definitions for every spec in ``specs_dir``, keeping state under ``home``."""
    home = private_dir(Path(home).resolve() if home else platform_home())
    specs = load_specs(specs_dir)
    model_defs = [Definitions(assets=model_assets(spec, home)) for spec in specs]
    model_defs += [model_automation(spec, home) for spec in specs]
    # Steps of a run share its process: a step in a fresh process pays seconds of imports
    # (Dagster, pandas, MLflow, scikit-learn) for a second of compute, and a run's steps
    # mostly wait on each other anyway.
    platform = Definitions(resources=platform_resources(home), executor=in_process_executor)
    return Definitions.merge(*model_defs, platform)


configure_logging(PLATFORM_LOGGER)  # Dagster owns the rest of its processes' logging
restrict_new_files()  # what steps and sensors write (MLflow artifacts, reports) holds patient data: owner-only
defs = build_definitions()
