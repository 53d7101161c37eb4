"""Sensors and schedules of each model."""

from pathlib import Path

from ml_platform.automation.sensors import build_automation_sensor, build_new_data_sensor
from ml_platform.specs import ModelSpec


def build(spec: ModelSpec, home: Path) -> list:
    return [build_new_data_sensor(spec, spec.landing_dir(home)), build_automation_sensor(spec)]
