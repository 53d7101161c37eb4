"""Sensors and schedules of each model."""

from pathlib import Path

from ml_platform.automation.sensors import build_approval_sensor, build_automation_sensor, build_new_data_sensor
from ml_platform.settings import database_url
from ml_platform.specs import ModelSpec


def build(spec: ModelSpec, home: Path) -> list:
    sensors = [build_new_data_sensor(spec, spec.landing_dir(home)), build_automation_sensor(spec)]
    if spec.deployment.approval == "required":
        sensors.append(build_approval_sensor(spec, database_url(home)))
    return sensors
