"""Log lines of the CLI and of Dagster sensors and steps, read as Filebeat or Fluent Bit would read them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLATFORM_LINE = ("@timestamp", "log.level", "message", "ecs.version", "service", "log")


def run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "ML_PLATFORM_HOME": str(home), **env}
    environment.pop("DAGSTER_HOME", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=environment)


def test_cli_logs_ecs_json_on_stderr_and_keeps_its_answer_on_stdout(home):
    result = run(["-m", "ml_platform.cli", "specs"], home, ML_PLATFORM_LOG_FORMAT="json", ML_PLATFORM_SITE="ward-7")
    assert result.returncode == 0, result.stderr
    assert "readmission_risk: binary_classification" in result.stdout
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    [ended] = [line for line in lines if line["log"]["logger"] == "ml_platform.cli"]
    assert all(field in ended for field in PLATFORM_LINE)
    assert ended["event"]["action"] == "cli.specs" and ended["event"]["outcome"] == "success"
    assert ended["event"]["duration"] > 0 and ended["labels"]["site"] == "ward-7"


def test_a_cli_error_is_one_json_line_too(home):
    result = run(["-m", "ml_platform.cli", "simulate", "no_such_model"], home, ML_PLATFORM_LOG_FORMAT="json")
    assert result.returncode == 2
    [line] = [json.loads(line) for line in result.stderr.splitlines()]
    assert line["log.level"] == "error" and line["event"]["outcome"] == "failure"
    assert "unknown model 'no_such_model'" in line["error"]["message"]


def test_cli_text_logs_are_not_json(home):
    result = run(["-m", "ml_platform.cli", "specs"], home, ML_PLATFORM_LOG_LEVEL="info")
    assert result.returncode == 0, result.stderr
    assert "INFO ml_platform.cli: ml-platform specs finished" in result.stderr
    for line in result.stderr.splitlines():
        with pytest.raises(ValueError):
            json.loads(line)


# A sensor tick and a run of the batch steps, in a process that loads the code location as Dagster does.
# The instance hands Dagster's own run events to an ECS handler (README, "Logs": python_logs).
DAGSTER_SCRIPT = textwrap.dedent(
    """
    import sys
    from dagster import AssetKey, build_sensor_context, instance_for_test

    import ml_platform.defs as location
    from ml_platform.data.simulators import seed_landing
    from ml_platform.settings import platform_home
    from ml_platform.spec import get_spec

    MODEL = "breast_cancer_diagnosis"
    ECS = {"class": "logging.StreamHandler", "formatter": "ecs", "stream": "ext://sys.stderr"}
    PYTHON_LOGS = {
        "dagster_handler_config": {
            "handlers": {"ecs": ECS},
            "formatters": {"ecs": {"()": "ml_platform.defs.console.DagsterEcsFormatter"}},
        }
    }
    seed_landing(get_spec(MODEL), platform_home())
    with instance_for_test(temp_dir=sys.argv[1], overrides={"python_logs": PYTHON_LOGS}) as instance:
        sensor = location.defs.get_sensor_def(f"{MODEL}_new_data")
        first = sensor(build_sensor_context(instance=instance))  # sees the files; they settle by the next tick
        tick = sensor(build_sensor_context(instance=instance, cursor=first.cursor))
        key = tick.run_requests[0].partition_key
        instance.add_dynamic_partitions(f"{MODEL}_batches", [key])
        assets = [AssetKey([MODEL, a]) for a in ("raw_batches", "validated_records", "quarantine", "features")]
        job = location.defs.resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(instance=instance, partition_key=key, asset_selection=assets).success
    """
)


def test_dagster_sensors_and_steps_log_the_platform_lines_as_ecs_json(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "dagster").mkdir()
    result = run(["-c", DAGSTER_SCRIPT, str(tmp_path / "dagster")], tmp_path / "home", ML_PLATFORM_LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    by_logger = {}
    for line in lines:
        assert all(field in line for field in PLATFORM_LINE), line
        by_logger.setdefault(line["log"]["logger"], []).append(line)
    found = by_logger["ml_platform.data.raw"]  # in the sensor tick
    assert {line["event"]["action"] for line in found} == {"batch_found"} and len(found) == 3
    [ingested] = by_logger["ml_platform.governance.audit"]  # in the validation step
    assert ingested["event"]["action"] == "batch_ingested"
    assert ingested["ml_platform"]["model"] == "breast_cancer_diagnosis"
    steps = {line["dagster"]["event_type"] for line in by_logger["dagster"] if "event_type" in line["dagster"]}
    assert {"STEP_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION"} <= steps
    # Dagster's default console logger still writes its own text lines beside them (README, "Logs").
    assert any(" - dagster - " in line for line in result.stderr.splitlines())
