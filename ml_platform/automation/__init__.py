"""Sensors and schedules of each model: new data, approvals, retrain triggers, monitoring windows."""

from pathlib import Path

from dagster import Definitions

from ml_platform.automation import triggers
from ml_platform.automation.sensors import build_approval_sensor, build_automation_sensor, build_new_data_sensor
from ml_platform.settings import database_url
from ml_platform.specs import ModelSpec


def build(spec: ModelSpec, home: Path) -> Definitions:
    url, retrain = database_url(home), triggers.retrain_job(spec)
    sensors = [
        build_new_data_sensor(spec, spec.landing_dir(home)),
        build_automation_sensor(spec),
        triggers.build_drift_sensor(spec, url, retrain),
        triggers.build_degradation_sensor(spec, url, retrain),
    ]
    if spec.monitoring.retrain.min_new_labelled_rows:
        sensors.append(triggers.build_new_outcomes_sensor(spec, url, retrain))
    if spec.deployment.approval == "required":
        sensors.append(build_approval_sensor(spec, url))
    return Definitions(sensors=sensors, schedules=triggers.build_schedules(spec, url, retrain), jobs=[retrain])
